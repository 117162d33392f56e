import { afterAll } from "@effect/vitest"
import { Effect, Layer } from "effect"
import { Conformance } from "@errand/testing"
import { BullMQBroker } from "../src/index.js"
import { deleteKeys, redisUrl, uniquePrefix } from "./helpers.js"
import { startRedisServer } from "./redisServer.js"

const prefix = uniquePrefix()

// Case 20 runs against a Redis of its own (appendonly yes, appendfsync always, own port and dir),
// started on first use and killed when the file is done.
let restartable: ReturnType<typeof startRedisServer> | undefined
const privateRedis = Effect.promise(() => (restartable ??= startRedisServer()))

afterAll(async () => {
  await Effect.runPromise(deleteKeys(prefix))
  if (restartable) await (await restartable).stop()
})

Conformance.run("bullmq", {
  layer: BullMQBroker.layer({ url: redisUrl, prefix }),
  capabilities: BullMQBroker.capabilities,
  restart: {
    layer: Layer.unwrap(
      Effect.map(privateRedis, (server) => BullMQBroker.layer({ url: server.url, prefix: "errand-restart" }))
    ),
    restart: Effect.flatMap(privateRedis, (server) => server.restart)
  }
})
