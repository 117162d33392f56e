import { describe, expect, it } from "@effect/vitest"
import { Broker } from "@errand/core"
import { Context, Effect, Layer, Option } from "effect"
import { Redis } from "ioredis"
import { BullMQBroker } from "../src/index.js"
import { deleteKeys, message, redisUrl, takeN, uniquePrefix, uniqueQueue } from "./helpers.js"

const raw = <A>(f: (redis: Redis) => Promise<A>) =>
  Effect.promise(async () => {
    const redis = new Redis(redisUrl)
    try {
      return await f(redis)
    } finally {
      redis.disconnect()
    }
  })

const setup = (options: BullMQBroker.Options = {}) =>
  Effect.gen(function* () {
    const prefix = uniquePrefix()
    const queue = uniqueQueue("retention")
    const broker = yield* Layer.build(BullMQBroker.layer({ url: redisUrl, prefix, ...options })).pipe(
      Effect.map((context) => Context.get(context, Broker.Broker))
    )
    yield* Effect.addFinalizer(() => Effect.orDie(broker.deleteQueue(queue)).pipe(Effect.andThen(deleteKeys(prefix))))
    return { broker, queue, prefix, key: (suffix: string) => `${prefix}:${queue}:${suffix}` }
  })

describe("retention", () => {
  it.live("completed jobs are bounded by keepCompleted; the trimmed ids are free again", () =>
    Effect.gen(function* () {
      const { broker, queue, key } = yield* setup({ keepCompleted: 2 })
      for (let i = 0; i < 5; i++) {
        yield* broker.send(queue, [message(`c${i}`)])
        const [d] = yield* takeN(broker, queue, 1)
        yield* d!.ack
      }
      expect(yield* raw((r) => r.zcard(key("completed")))).toBe(2)
      expect((yield* broker.send(queue, [message("c4")]))[0]).toEqual({
        id: "c4",
        duplicate: true,
        existingState: "completed"
      })
      expect((yield* broker.send(queue, [message("c0")]))[0]?.duplicate).toBe(false)
    }).pipe(Effect.scoped)
  )

  it.live("dead-lettered jobs are kept (failed set and DLQ) however many complete", () =>
    Effect.gen(function* () {
      const { broker, queue, key } = yield* setup({ keepCompleted: 1 })
      yield* broker.send(
        queue,
        Array.from({ length: 6 }, (_, i) => message(`j${i}`, `body-${i}`))
      )
      const all = yield* takeN(broker, queue, 6)
      for (const d of all) {
        if (Number(d.id.slice(1)) % 2 === 0) yield* d.ack
        else
          yield* d.deadLetter({ body: d.body, reason: "exhausted", error: "boom", attempts: 5, failedAt: Date.now() })
      }
      expect(yield* raw((r) => r.zcard(key("completed")))).toBe(1)
      expect(yield* raw((r) => r.zcard(key("failed")))).toBe(3)
      expect(yield* broker.deadLetters.count(queue)).toBe(3)
    }).pipe(Effect.scoped)
  )

  it.live("the DLQ keeps payload and error even when the failed job is trimmed, and the id still answers dead", () =>
    Effect.gen(function* () {
      const { broker, queue, key } = yield* setup()
      yield* broker.send(queue, [message("gone", "precious")])
      const [d] = yield* takeN(broker, queue, 1)
      yield* d!.deadLetter({ body: d!.body, reason: "unrecoverable", error: "bad input", attempts: 1, failedAt: 42 })
      // Someone trims BullMQ's failed set by hand.
      yield* raw(async (r) => {
        const ids = await r.zrange(key("failed"), "0", "-1")
        for (const id of ids) await r.del(key(id))
        await r.del(key("failed"))
      })
      const entry = Option.getOrThrow(yield* broker.deadLetters.get(queue, "gone"))
      expect(entry).toMatchObject({
        body: "precious",
        error: "bad input",
        reason: "unrecoverable",
        attempts: 1,
        failedAt: 42
      })
      expect((yield* broker.send(queue, [message("gone")]))[0]).toEqual({
        id: "gone",
        duplicate: true,
        existingState: "dead"
      })
      expect(yield* broker.stats(queue)).toEqual({ waiting: 0, active: 0, delayed: 0, dead: 1 })
      // Redrive still works without the BullMQ job.
      expect(yield* broker.deadLetters.redrive(queue, { prepare: (e) => message(e.id, e.body) })).toBe(1)
      const [again] = yield* takeN(broker, queue, 1)
      expect(again?.body).toBe("precious")
      yield* again!.ack
    }).pipe(Effect.scoped)
  )
})
