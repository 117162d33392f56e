import { describe, expect, it } from "@effect/vitest"
import { Effect, Fiber } from "effect"
import { RabbitMQBroker } from "../src/index.js"
import { message, takeAtLeast, uniqueQueue, url } from "./helpers.js"

describe.each(["classic", "quorum"] as const)("round trip (%s)", (queueType) => {
  it.live("sends, takes and acks", () =>
    Effect.gen(function* () {
      const broker = yield* RabbitMQBroker.make({ url, queueType })
      const queue = uniqueQueue("rt")
      yield* Effect.addFinalizer(() => Effect.ignore(broker.deleteQueue(queue)))
      const results = yield* broker.send(queue, [message("a", { group: "g1" }), message("b")])
      expect(results).toEqual([
        { id: "a", duplicate: false },
        { id: "b", duplicate: false }
      ])
      const deliveries = yield* takeAtLeast(broker, queue, 2)
      expect(deliveries.map((d) => d.id).sort()).toEqual(["a", "b"])
      expect(deliveries.map((d) => d.body).sort()).toEqual([JSON.stringify({ id: "a" }), JSON.stringify({ id: "b" })])
      expect(deliveries.every((d) => d.receiveCount === 1)).toBe(true)
      const stats = yield* broker.stats(queue)
      expect(stats).toEqual({ waiting: 0, active: 2, delayed: 0, dead: 0 })
      for (const d of deliveries) yield* d.ack
      for (const d of deliveries) yield* d.ack // idempotent
      expect(yield* broker.stats(queue)).toEqual({ waiting: 0, active: 0, delayed: 0, dead: 0 })
      expect(yield* broker.take(queue, { max: 5, lease: 1000, wait: 300 })).toEqual([])
    }).pipe(Effect.scoped)
  )
})

describe("waiting takes", () => {
  it.live("each waits out its own wait, and a delivery goes to one of them", () =>
    Effect.gen(function* () {
      const broker = yield* RabbitMQBroker.make({ url })
      const queue = uniqueQueue("wait")
      yield* Effect.addFinalizer(() => Effect.ignore(broker.deleteQueue(queue)))
      yield* broker.send(queue, [message("first")])
      yield* (yield* takeAtLeast(broker, queue, 1))[0]!.ack
      // the consumer runs; two takes wait on it, the short one and the long one
      const started = Date.now()
      const short = yield* Effect.forkChild(
        Effect.map(broker.take(queue, { max: 1, lease: 30_000, wait: 300 }), (got) => ({ got, at: Date.now() }))
      )
      const long = yield* Effect.forkChild(broker.take(queue, { max: 1, lease: 30_000, wait: 5000 }))
      const { at, got } = yield* Fiber.join(short)
      expect(got).toEqual([])
      expect(at - started).toBeGreaterThanOrEqual(290)
      expect(at - started).toBeLessThan(2000)
      // the long one still waits, and takes what arrives
      yield* broker.send(queue, [message("second")])
      const taken = yield* Fiber.join(long)
      expect(taken.map((d) => d.id)).toEqual(["second"])
      expect(Date.now() - started).toBeLessThan(4000)
      yield* taken[0]!.ack
    }).pipe(Effect.scoped)
  )
})
