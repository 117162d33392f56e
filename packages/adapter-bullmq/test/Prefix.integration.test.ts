import { describe, expect, it } from "@effect/vitest"
import { Broker } from "@errand/core"
import { Context, Effect, Layer } from "effect"
import { BullMQBroker } from "../src/index.js"
import { countKeys, deleteKeys, message, redisUrl, takeN, uniquePrefix, uniqueQueue } from "./helpers.js"

const brokerWith = (prefix: string) =>
  Layer.build(BullMQBroker.layer({ url: redisUrl, prefix })).pipe(
    Effect.map((context) => Context.get(context, Broker.Broker))
  )

describe("key prefix", () => {
  it.effect.each(["", "a:b", "has space", "{a}{b}", "{}", "a*", "x".repeat(81), "{errand"])(
    "refuses the prefix %j before connecting",
    (prefix) =>
      Effect.gen(function* () {
        const error = yield* Effect.flip(Layer.build(BullMQBroker.layer({ url: "redis://127.0.0.1:1", prefix })))
        expect(error._tag).toBe("InvalidQueueName")
      }).pipe(Effect.scoped)
  )

  it.live("accepts one Redis Cluster hash tag and keeps every key of the queue under it", () =>
    Effect.gen(function* () {
      const tag = `{${uniquePrefix()}}`
      const broker = yield* brokerWith(tag)
      const queue = uniqueQueue()
      yield* broker.send(queue, [message("one")])
      const [d] = yield* takeN(broker, queue, 1)
      yield* d!.deadLetter({ body: d!.body, reason: "unrecoverable", error: "no", attempts: 1, failedAt: 1 })
      expect(yield* countKeys(tag)).toBeGreaterThan(0)
      yield* broker.deleteQueue(queue)
      expect(yield* countKeys(tag)).toBe(0)
    }).pipe(Effect.scoped)
  )

  it.live("two prefixes on one Redis never see each other's queues", () =>
    Effect.gen(function* () {
      const p1 = uniquePrefix()
      const p2 = uniquePrefix()
      const queue = uniqueQueue("same-name")
      const one = yield* brokerWith(p1)
      const two = yield* brokerWith(p2)
      yield* one.send(queue, [message("only-in-one")])
      const [dup] = yield* two.send(queue, [message("only-in-one")])
      expect(dup?.duplicate).toBe(false)
      expect((yield* two.stats(queue)).waiting).toBe(1)
      const fromTwo = yield* two.take(queue, { max: 10, lease: 10_000, wait: 300 })
      expect(fromTwo.length).toBe(1)
      yield* fromTwo[0]!.deadLetter({ body: "x", reason: "exhausted", error: "e", attempts: 1, failedAt: 1 })
      expect(yield* one.stats(queue)).toEqual({ waiting: 1, active: 0, delayed: 0, dead: 0 })
      expect(yield* two.stats(queue)).toEqual({ waiting: 0, active: 0, delayed: 0, dead: 1 })
      yield* two.deleteQueue(queue)
      expect(yield* countKeys(p2)).toBe(0)
      expect(yield* countKeys(p1)).toBeGreaterThan(0)
      yield* one.deleteQueue(queue)
      yield* deleteKeys(p1)
      yield* deleteKeys(p2)
    }).pipe(Effect.scoped)
  )
})
