import { describe, expect, it } from "@effect/vitest"
import { Broker } from "@errand/core"
import { Context, Effect, Exit, Fiber, Layer, Scope } from "effect"
import { BullMQBroker } from "../src/index.js"
import { deleteKeys, message, redisUrl, takeN, uniquePrefix, uniqueQueue } from "./helpers.js"

const build = (options: BullMQBroker.Options, scope: Scope.Scope) =>
  Layer.buildWithScope(BullMQBroker.layer(options), scope).pipe(
    Effect.map((context) => Context.get(context, Broker.Broker))
  )

/** Two brokers (two processes, as far as Redis can tell) on one prefix. */
const twoBrokers = <A, E>(f: (a: Broker.BrokerShape, b: Broker.BrokerShape, queue: string) => Effect.Effect<A, E>) =>
  Effect.gen(function* () {
    const options = { url: redisUrl, prefix: uniquePrefix(), stalledInterval: 250 }
    const scope = yield* Scope.make()
    const a = yield* build(options, scope)
    const b = yield* build(options, scope)
    return yield* f(a, b, uniqueQueue("take")).pipe(
      Effect.ensuring(Effect.flatMap(Scope.close(scope, Exit.void), () => deleteKeys(options.prefix)))
    )
  })

describe("take on a drained queue", () => {
  it.live("a take that found the queue empty still fetches when asked not to wait", () =>
    twoBrokers((broker, _, queue) =>
      Effect.gen(function* () {
        expect(yield* broker.take(queue, { max: 1, lease: 30_000, wait: 100 })).toEqual([])
        yield* broker.send(queue, [message("j")])
        const [j] = yield* broker.take(queue, { max: 1, lease: 30_000, wait: 0 })
        expect(j?.id).toBe("j")
        yield* j!.ack
      })
    )
  )

  it.live("a blocked take wakes at once when a job is sent, and hands out only that job", () =>
    twoBrokers((broker, _, queue) =>
      Effect.gen(function* () {
        expect(yield* broker.take(queue, { max: 1, lease: 30_000, wait: 100 })).toEqual([])
        const blocked = yield* Effect.forkChild(broker.take(queue, { max: 10, lease: 30_000, wait: 10_000 }))
        yield* Effect.sleep(200)
        const sentAt = Date.now()
        yield* broker.send(queue, [message("k")])
        const got = yield* Fiber.join(blocked)
        expect(got.map((d) => d.id)).toEqual(["k"])
        expect(Date.now() - sentAt).toBeLessThan(1000)
        yield* got[0]!.ack
      })
    )
  )

  it.live("a job released by another process wakes a blocked take (BullMQ sets no marker for it)", () =>
    twoBrokers((a, b, queue) =>
      Effect.gen(function* () {
        yield* a.send(queue, [message("r")])
        const [r] = yield* takeN(a, queue, 1, { lease: 60_000 })
        expect(r?.id).toBe("r")
        // b finds the queue empty and blocks on its marker (for at most 2 s per wait)
        expect(yield* b.take(queue, { max: 1, lease: 30_000, wait: 100 })).toEqual([])
        const blocked = yield* Effect.forkChild(b.take(queue, { max: 1, lease: 30_000, wait: 10_000 }))
        yield* Effect.sleep(300)
        const releasedAt = Date.now()
        yield* r!.release
        const [back] = yield* Fiber.join(blocked)
        expect(back?.id).toBe("r")
        expect(Date.now() - releasedAt, "woken by the release, not by the 2 s bound").toBeLessThan(1000)
        yield* back!.ack
      })
    )
  )

  it.live("jobs sent one by one to a blocked take, each followed by the ack of the job in flight, start promptly", () =>
    twoBrokers((broker, _, queue) =>
      Effect.gen(function* () {
        yield* broker.send(queue, [message("seed")])
        let [inFlight] = yield* takeN(broker, queue, 1)
        for (let round = 0; round < 20; round++) {
          const blocked = yield* Effect.forkChild(broker.take(queue, { max: 5, lease: 30_000, wait: 10_000 }))
          yield* Effect.sleep(20)
          const sentAt = Date.now()
          // The ack reaches Redis before the woken take's fetch: were it to fetch the next job, that
          // job would wait in this process for a take that sleeps in Redis again.
          yield* broker.send(queue, [message(`n${round}`)])
          yield* inFlight!.ack
          const got = yield* Fiber.join(blocked)
          expect(got.map((d) => d.id)).toEqual([`n${round}`])
          expect(Date.now() - sentAt).toBeLessThan(800)
          inFlight = got[0]
        }
        yield* inFlight!.ack
        expect(yield* broker.stats(queue)).toEqual({ waiting: 0, active: 0, delayed: 0, dead: 0 })
      })
    )
  )
})
