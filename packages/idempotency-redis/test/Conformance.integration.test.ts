import { afterAll } from "@effect/vitest"
import { Effect } from "effect"
import { Redis } from "ioredis"
import { randomUUID } from "node:crypto"
import { Conformance, MemoryBroker } from "@errand/testing"
import { RedisIdempotencyStore } from "../src/index.js"

// The store with core's real users of it (producer dedup, the worker's idempotency guard, the
// scheduler's tick keys), on the embedded broker so that only the store is under test here.
const redisUrl = process.env.REDIS_URL ?? "redis://127.0.0.1:6379"
const prefix = `errand-idem-conf-${randomUUID().slice(0, 8)}`

afterAll(() =>
  Effect.runPromise(
    Effect.promise(async () => {
      const redis = new Redis(redisUrl)
      const keys = await redis.keys(`${prefix}:*`)
      if (keys.length > 0) await redis.del(...keys)
      redis.disconnect()
    })
  )
)

Conformance.run("memory + redis idempotency store", {
  layer: MemoryBroker.layer(),
  capabilities: MemoryBroker.capabilities,
  idempotencyStore: RedisIdempotencyStore.layer({ url: redisUrl, prefix }),
  restartSkipReason: "the in-memory broker keeps nothing across restarts"
})
