import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { RabbitMQBroker } from "../src/index.js"
import { eventually, message, takeAtLeast, uniqueQueue, url } from "./helpers.js"

describe("delay tiers", () => {
  it("declares maxDelay as the sum of the tiers", () => {
    expect(RabbitMQBroker.capabilitiesFor({}).maxDelay).toBe(100 * (2 ** 16 - 1))
    expect(RabbitMQBroker.capabilitiesFor({ delayResolution: 10, delayTiers: 4 }).maxDelay).toBe(150)
  })

  describe.each(["classic", "quorum"] as const)("%s", (queueType) => {
    it.live("a delayed message waits in its tiers and arrives not before, promptly after", () =>
      Effect.gen(function* () {
        const broker = yield* RabbitMQBroker.make({ url, queueType })
        const queue = uniqueQueue("delay")
        yield* Effect.addFinalizer(() => Effect.ignore(broker.deleteQueue(queue)))
        expect(broker.tiersFor(1300)).toEqual([800, 400, 100])
        expect(broker.tiersFor(1250)).toEqual([800, 400, 100]) // rounded up, never early
        const sentAt = Date.now()
        yield* broker.send(queue, [message("late", { delay: 1300 }), message("now")])
        // "now" is ready at once; "late" sits in the wait tiers.
        const stats = yield* eventually(broker.stats(queue), (s) => s.delayed === 1 && s.waiting === 1)
        expect(stats.dead).toBe(0)
        const first = yield* takeAtLeast(broker, queue, 1)
        expect(first.map((d) => d.id)).toEqual(["now"])
        yield* first[0]!.ack
        const second = yield* takeAtLeast(broker, queue, 1, 10_000)
        const arrivedAfter = Date.now() - sentAt
        expect(second.map((d) => d.id)).toEqual(["late"])
        expect(arrivedAfter).toBeGreaterThanOrEqual(1300)
        expect(arrivedAfter).toBeLessThan(1300 + 1500)
        yield* second[0]!.ack
        expect(yield* broker.stats(queue)).toEqual({ waiting: 0, active: 0, delayed: 0, dead: 0 })
      }).pipe(Effect.scoped)
    )

    it.live("a short delay sent after a long one is not blocked behind it", () =>
      Effect.gen(function* () {
        const broker = yield* RabbitMQBroker.make({ url, queueType })
        const queue = uniqueQueue("delay-order")
        yield* Effect.addFinalizer(() => Effect.ignore(broker.deleteQueue(queue)))
        const sentAt = Date.now()
        yield* broker.send(queue, [message("long", { delay: 3000 })])
        yield* broker.send(queue, [message("short", { delay: 500 })])
        const first = yield* takeAtLeast(broker, queue, 1)
        expect(first.map((d) => d.id)).toEqual(["short"])
        expect(Date.now() - sentAt).toBeLessThan(2500)
        yield* first[0]!.ack
        const second = yield* takeAtLeast(broker, queue, 1)
        expect(second.map((d) => d.id)).toEqual(["long"])
        expect(Date.now() - sentAt).toBeGreaterThanOrEqual(3000)
        yield* second[0]!.ack
      }).pipe(Effect.scoped)
    )

    it.live("retry with a delay goes through the tiers with the new body; delay 0 goes straight back", () =>
      Effect.gen(function* () {
        const broker = yield* RabbitMQBroker.make({ url, queueType })
        const queue = uniqueQueue("retry")
        yield* Effect.addFinalizer(() => Effect.ignore(broker.deleteQueue(queue)))
        yield* broker.send(queue, [message("job", { priority: 3 })])
        const [first] = yield* takeAtLeast(broker, queue, 1)
        const retriedAt = Date.now()
        yield* first!.retry({ body: "attempt-2", delay: 700 })
        yield* first!.ack // no-op: first settle wins
        const [second] = yield* takeAtLeast(broker, queue, 1)
        expect(Date.now() - retriedAt).toBeGreaterThanOrEqual(700)
        expect(second!.id).toBe("job")
        expect(second!.body).toBe("attempt-2")
        yield* second!.retry({ body: "attempt-3", delay: 0 })
        const [third] = yield* takeAtLeast(broker, queue, 1)
        expect(third!.body).toBe("attempt-3")
        yield* third!.release
        const [fourth] = yield* takeAtLeast(broker, queue, 1)
        expect(fourth!.body).toBe("attempt-3")
        expect(fourth!.receiveCount).toBe(2)
        yield* fourth!.ack
      }).pipe(Effect.scoped)
    )
  })
})
