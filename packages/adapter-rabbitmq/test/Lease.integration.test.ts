import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { RabbitMQBroker } from "../src/index.js"
import { message, takeAtLeast, uniqueQueue, url } from "./helpers.js"

describe("leases (kept by the adapter: AMQP has none)", () => {
  it.live("an unsettled delivery goes back to the queue when its lease runs out; its late ack is dropped", () =>
    Effect.gen(function* () {
      const broker = yield* RabbitMQBroker.make({ url, leaseExtension: false })
      expect(broker.capabilities.leaseExtension).toBe(false)
      const queue = uniqueQueue("lease")
      yield* Effect.addFinalizer(() => Effect.ignore(broker.deleteQueue(queue)))
      yield* broker.send(queue, [message("held")])
      const [first] = yield* broker.take(queue, { max: 1, lease: 1000, wait: 5000 })
      const takenAt = Date.now()
      expect(first?.id).toBe("held")
      expect(yield* broker.take(queue, { max: 1, lease: 1000, wait: 500 })).toEqual([])
      const [second] = yield* takeAtLeast(broker, queue, 1, 10_000)
      const after = Date.now() - takenAt
      expect(second?.id).toBe("held")
      expect(after).toBeGreaterThanOrEqual(1000 - 50)
      expect(after).toBeLessThan(4000)
      yield* first!.ack // expired: a no-op, does not ack the redelivery
      yield* first!.extendLease(60_000) // a no-op without leaseExtension
      expect((yield* broker.stats(queue)).active).toBe(1)
      yield* second!.ack
      expect(yield* broker.stats(queue)).toEqual({ waiting: 0, active: 0, delayed: 0, dead: 0 })
    }).pipe(Effect.scoped)
  )

  it.live("with leaseExtension: true, extendLease keeps the delivery", () =>
    Effect.gen(function* () {
      const broker = yield* RabbitMQBroker.make({ url, leaseExtension: true })
      expect(broker.capabilities.leaseExtension).toBe(true)
      const queue = uniqueQueue("lease-ext")
      yield* Effect.addFinalizer(() => Effect.ignore(broker.deleteQueue(queue)))
      yield* broker.send(queue, [message("kept")])
      const [first] = yield* broker.take(queue, { max: 1, lease: 1000, wait: 5000 })
      yield* first!.extendLease(5000)
      expect(yield* broker.take(queue, { max: 1, lease: 1000, wait: 2500 })).toEqual([])
      yield* first!.ack
      expect(yield* broker.stats(queue)).toEqual({ waiting: 0, active: 0, delayed: 0, dead: 0 })
    }).pipe(Effect.scoped)
  )
})
