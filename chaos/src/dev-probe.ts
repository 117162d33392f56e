import { Broker } from "@errand/core"
import { Effect } from "effect"
import { brokerLayer } from "./internal/adapters.js"
import { startRedis } from "./internal/processes.js"

const redis = await startRedis()
console.log("redis", redis.url)
const prog = Effect.gen(function* () {
  const b = yield* Broker.Broker
  for (let i = 0; i < 4; i++) {
    const t = Date.now()
    const got = yield* Effect.result(b.take("q1", { max: 8, lease: 5000, wait: 500 }))
    console.log("take", i, got._tag, got._tag === "Failure" ? got.failure.message : got.success.length, Date.now() - t)
  }
  yield* b.send("q1", [{ id: "a", body: "{}", delay: 0, priority: 0 }])
  const got = yield* Effect.result(b.take("q1", { max: 8, lease: 5000, wait: 500 }))
  console.log("take after send", got._tag === "Failure" ? got.failure.message : got.success.length)
}).pipe(Effect.provide(brokerLayer({ kind: "bullmq", url: redis.url, prefix: "p1" })))
const exit = await Effect.runPromiseExit(prog)
console.log(exit._tag)
await redis.stop()
