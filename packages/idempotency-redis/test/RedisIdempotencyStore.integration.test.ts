import { describe, expect, it } from "@effect/vitest"
import { Errors, Idempotency } from "@errand/core"
import { ConfigProvider, Context, Effect, Layer } from "effect"
import { Redis } from "ioredis"
import { randomUUID } from "node:crypto"
import { RedisIdempotencyStore } from "../src/index.js"

const redisUrl = process.env.REDIS_URL ?? "redis://127.0.0.1:6379"
const uniquePrefix = () => `errand-idem-test-${randomUUID().slice(0, 8)}`

const deleteKeys = (prefix: string) =>
  Effect.promise(async () => {
    const redis = new Redis(redisUrl)
    try {
      const keys = await redis.keys(`${prefix}:*`)
      if (keys.length > 0) await redis.del(...keys)
      return keys.length
    } finally {
      redis.disconnect()
    }
  })

/** A store on a fresh prefix, deleted afterwards; `twin` is a second, independent connection to the same keys. */
const stores = Effect.gen(function* () {
  const prefix = uniquePrefix()
  yield* Effect.addFinalizer(() => deleteKeys(prefix))
  const build = () =>
    Layer.build(RedisIdempotencyStore.layer({ url: redisUrl, prefix })).pipe(
      Effect.map((context) => Context.get(context, Idempotency.IdempotencyStore))
    )
  return { store: yield* build(), twin: yield* build(), prefix }
})

const claimed = (result: Idempotency.ClaimResult): string => {
  if (result._tag !== "claimed") throw new Error(`expected claimed, got ${result._tag}`)
  return result.token
}

describe("RedisIdempotencyStore", () => {
  it.live("claim → busy for others → complete → done; stored under the prefix", () =>
    Effect.gen(function* () {
      const { store, twin, prefix } = yield* stores
      const token = claimed(yield* store.claim("order-1", 10_000))
      expect(yield* twin.claim("order-1", 10_000)).toEqual({ _tag: "busy" })
      expect(yield* store.claim("order-1", 10_000)).toEqual({ _tag: "busy" })
      expect(yield* store.complete("order-1", token, 10_000)).toBe(true)
      expect(yield* twin.claim("order-1", 10_000)).toEqual({ _tag: "done" })
      const keys = yield* Effect.promise(async () => {
        const redis = new Redis(redisUrl)
        const found = await redis.keys(`${prefix}:*`)
        redis.disconnect()
        return found
      })
      expect(keys).toEqual([`${prefix}:idempotency:order-1`])
    }).pipe(Effect.scoped)
  )

  it.live("token mismatch: another caller's token can neither complete nor release", () =>
    Effect.gen(function* () {
      const { store, twin } = yield* stores
      const token = claimed(yield* store.claim("k", 10_000))
      expect(yield* twin.complete("k", "not-the-token", 10_000)).toBe(false)
      yield* twin.release("k", "not-the-token")
      expect(yield* twin.claim("k", 10_000)).toEqual({ _tag: "busy" })
      // After completion, even the right token cannot release the done marker.
      expect(yield* store.complete("k", token, 10_000)).toBe(true)
      yield* store.release("k", token)
      expect(yield* twin.claim("k", 10_000)).toEqual({ _tag: "done" })
    }).pipe(Effect.scoped)
  )

  it.live("release lets the next caller claim", () =>
    Effect.gen(function* () {
      const { store, twin } = yield* stores
      const token = claimed(yield* store.claim("r", 10_000))
      yield* store.release("r", token)
      const next = claimed(yield* twin.claim("r", 10_000))
      expect(next).not.toBe(token)
    }).pipe(Effect.scoped)
  )

  it.live("TTL: an abandoned claim expires, and so does done", () =>
    Effect.gen(function* () {
      const { store, twin } = yield* stores
      const first = claimed(yield* store.claim("t", 300))
      expect(yield* twin.claim("t", 300)).toEqual({ _tag: "busy" })
      let second: Idempotency.ClaimResult = { _tag: "busy" }
      const deadline = Date.now() + 5000
      while (second._tag === "busy" && Date.now() < deadline) second = yield* twin.claim("t", 10_000)
      const token = claimed(second)
      // The first holder lost its claim: it can no longer complete.
      expect(yield* store.complete("t", first, 10_000)).toBe(false)
      expect(yield* twin.complete("t", token, 300)).toBe(true)
      expect(yield* store.claim("t", 10_000)).toEqual({ _tag: "done" })
      let after: Idempotency.ClaimResult = { _tag: "done" }
      const doneDeadline = Date.now() + 5000
      while (after._tag === "done" && Date.now() < doneDeadline) after = yield* store.claim("t", 10_000)
      expect(after._tag).toBe("claimed")
    }).pipe(Effect.scoped)
  )

  it.live("complete after the claim expired (and nobody else claimed) still marks done", () =>
    Effect.gen(function* () {
      const { store } = yield* stores
      const token = claimed(yield* store.claim("late", 50))
      yield* Effect.sleep(150)
      expect(yield* store.complete("late", token, 10_000)).toBe(true)
      expect(yield* store.claim("late", 10_000)).toEqual({ _tag: "done" })
    }).pipe(Effect.scoped)
  )

  it.live("concurrent claims from two connections: exactly one wins", () =>
    Effect.gen(function* () {
      const { store, twin } = yield* stores
      const results = yield* Effect.forEach(
        Array.from({ length: 40 }, (_, i) => (i % 2 === 0 ? store : twin)),
        (s) => s.claim("race", 10_000),
        { concurrency: "unbounded" }
      )
      expect(results.filter((r) => r._tag === "claimed").length).toBe(1)
      expect(results.filter((r) => r._tag === "busy").length).toBe(39)
    }).pipe(Effect.scoped)
  )

  it.live("keys with any characters are kept apart", () =>
    Effect.gen(function* () {
      const { store } = yield* stores
      for (const key of ["a:b", "a", "a b", "ключ", "{x}", "*"])
        expect((yield* store.claim(key, 10_000))._tag).toBe("claimed")
    }).pipe(Effect.scoped)
  )

  it.effect.each(["", "a:b", "{a}{b}", "with space"])("refuses the prefix %j", (prefix) =>
    Effect.gen(function* () {
      const error = yield* Effect.flip(Layer.build(RedisIdempotencyStore.layer({ url: redisUrl, prefix })))
      expect(error._tag).toBe("InvalidQueueName")
    }).pipe(Effect.scoped)
  )

  it.live("an unreachable Redis is a typed Connection error without the password", () =>
    Effect.gen(function* () {
      const error = yield* Effect.flip(
        Layer.build(RedisIdempotencyStore.layer({ url: "redis://:hunter2@127.0.0.1:1", connectTimeout: 1000 }))
      )
      expect(error).toBeInstanceOf(Errors.BrokerError)
      if (error instanceof Errors.BrokerError) {
        expect(error.reason).toBe("Connection")
        expect(error.message).toContain("127.0.0.1:1")
        expect(error.message).not.toContain("hunter2")
      }
    }).pipe(Effect.scoped)
  )

  it.live("layerConfig reads REDIS_URL and ERRAND_PREFIX", () =>
    Effect.gen(function* () {
      const prefix = uniquePrefix()
      const context = yield* Layer.build(RedisIdempotencyStore.layerConfig()).pipe(
        Effect.provide(ConfigProvider.layer(ConfigProvider.fromUnknown({ REDIS_URL: redisUrl, ERRAND_PREFIX: prefix })))
      )
      const store = Context.get(context, RedisIdempotencyStore.RedisIdempotencyStore)
      expect(store.prefix).toBe(prefix)
      claimed(yield* store.claim("x", 1000))
      yield* deleteKeys(prefix)
    }).pipe(Effect.scoped)
  )
})
