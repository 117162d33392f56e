import { describe, expect, it } from "@effect/vitest"
import { Broker, Envelope } from "@errand/core"
import { Effect, Layer, Option } from "effect"
import { afterAll, beforeAll } from "vitest"
import { SqsBroker } from "../src/index.js"
import * as Fauxqs from "./fauxqs.js"

let emulator: Fauxqs.Emulator
beforeAll(async () => {
  emulator = await Fauxqs.start()
})
afterAll(async () => {
  await emulator?.stop()
})

const envelope = (id: string, attempts = 0, extra: Partial<Envelope.Envelope> = {}): string =>
  Envelope.encode({
    v: 1,
    id,
    job: "test",
    payload: { n: id },
    attempts,
    maxAttempts: 5,
    enqueuedAt: Date.now(),
    priority: 0,
    ...extra
  })

/** Take until `predicate` holds on the accumulated deliveries, or fail after `timeout` ms. */
const takeUntil = (
  broker: Broker.BrokerShape,
  queue: string,
  count: number,
  options: { readonly lease?: number; readonly timeout?: number } = {}
) =>
  Effect.gen(function* () {
    const got: Array<Broker.Delivery> = []
    const deadline = Date.now() + (options.timeout ?? 10_000)
    while (got.length < count && Date.now() < deadline) {
      got.push(...(yield* broker.take(queue, { max: count - got.length, lease: options.lease ?? 30_000, wait: 1000 })))
    }
    return got
  })

for (const fifo of [false, true]) {
  const kind = fifo ? "fifo" : "standard"
  const layer = () => SqsBroker.layer({ ...Fauxqs.clientOptions(emulator.endpoint), fifo })
  const run = <A, E>(f: (broker: Broker.BrokerShape, queue: string) => Effect.Effect<A, E>) =>
    Effect.gen(function* () {
      const broker = yield* Broker.Broker
      const queue = Fauxqs.queueName(`contract-${kind}`, fifo)
      return yield* f(broker, queue).pipe(Effect.ensuring(Effect.ignore(broker.deleteQueue(queue))))
    }).pipe(Effect.provide(Layer.fresh(layer())))

  describe(`SqsBroker contract (${kind})`, () => {
    it.live("round trip: body, id and receive count arrive; ack removes", () =>
      run((broker, queue) =>
        Effect.gen(function* () {
          const bodyA = envelope("a")
          const bodyB = envelope("b", 0, { payload: { text: "nul \u0000 ffff \uffff emoji 🎉 sep \u2028" } })
          const results = yield* broker.send(queue, [
            { id: "a", body: bodyA, delay: 0, priority: 0 },
            { id: "b", body: bodyB, delay: 0, priority: 0 }
          ])
          expect(results).toEqual([
            { id: "a", duplicate: false },
            { id: "b", duplicate: false }
          ])
          const got = yield* takeUntil(broker, queue, 2)
          expect(got.map((d) => d.id).sort()).toEqual(["a", "b"])
          expect(got.find((d) => d.id === "a")!.body).toBe(bodyA)
          // characters SQS refuses travel as JSON escapes: the decoded envelope is unchanged
          expect(JSON.parse(got.find((d) => d.id === "b")!.body)).toEqual(JSON.parse(bodyB))
          expect(got[0]!.receiveCount).toBe(1)
          const stats = yield* broker.stats(queue)
          expect(stats.active).toBe(2)
          yield* Effect.forEach(got, (d) => d.ack, { concurrency: "unbounded" })
          yield* Effect.forEach(got, (d) => d.ack) // idempotent
          const after = yield* broker.stats(queue)
          expect(after).toEqual({ waiting: 0, active: 0, delayed: 0, dead: 0 })
        })
      )
    )

    it.live("retry replaces the body; the new body is delivered", () =>
      run((broker, queue) =>
        Effect.gen(function* () {
          yield* broker.send(queue, [{ id: "r", body: envelope("r"), delay: 0, priority: 0 }])
          const [first] = yield* takeUntil(broker, queue, 1)
          yield* first!.retry({ body: envelope("r", 1), delay: 0 })
          yield* first!.ack // no-op: first settle wins
          const [second] = yield* takeUntil(broker, queue, 1)
          expect(second!.id).toBe("r")
          expect(JSON.parse(second!.body).attempts).toBe(1)
          yield* second!.ack
          expect(yield* broker.stats(queue)).toEqual({ waiting: 0, active: 0, delayed: 0, dead: 0 })
        })
      )
    )

    it.live("release gives the message back at once, unchanged", () =>
      run((broker, queue) =>
        Effect.gen(function* () {
          const body = envelope("x")
          yield* broker.send(queue, [{ id: "x", body, delay: 0, priority: 0 }])
          const [first] = yield* takeUntil(broker, queue, 1, { lease: 600_000 })
          yield* first!.release
          const [again] = yield* takeUntil(broker, queue, 1, { timeout: 5000 })
          expect(again!.body).toBe(body)
          expect(again!.receiveCount).toBe(2)
          yield* again!.ack
        })
      )
    )

    it.live("an unsettled delivery comes back after its lease", () =>
      run((broker, queue) =>
        Effect.gen(function* () {
          yield* broker.send(queue, [{ id: "c", body: envelope("c"), delay: 0, priority: 0 }])
          const [first] = yield* takeUntil(broker, queue, 1, { lease: 1000 })
          expect(first).toBeDefined()
          const started = Date.now()
          const [again] = yield* takeUntil(broker, queue, 1, { timeout: 10_000 })
          expect(again!.id).toBe("c")
          expect(Date.now() - started).toBeGreaterThanOrEqual(500)
          yield* again!.ack
          // the stale delivery cannot resurrect it
          yield* Effect.ignore(first!.ack)
        })
      )
    )

    it.live("dead letters: list, get, count, redrive, purge", () =>
      run((broker, queue) =>
        Effect.gen(function* () {
          yield* broker.send(
            queue,
            ["d1", "d2", "d3"].map((id) => ({ id, body: envelope(id, 4), delay: 0, priority: 0 }))
          )
          const got = yield* takeUntil(broker, queue, 3)
          expect(got.length).toBe(3)
          for (const [i, d] of got.entries()) {
            yield* d.deadLetter({
              body: d.body,
              reason: "exhausted",
              error: `boom ${d.id}`,
              attempts: 5,
              failedAt: 1000 + i
            })
          }
          expect(yield* broker.deadLetters.count(queue)).toBe(3)
          expect((yield* broker.stats(queue)).dead).toBe(3)
          const list = yield* broker.deadLetters.list(queue, { offset: 0, limit: 10 })
          expect(list.map((e) => e.id).sort()).toEqual(["d1", "d2", "d3"])
          const page = yield* broker.deadLetters.list(queue, { offset: 1, limit: 1 })
          expect(page.length).toBe(1)
          const d2 = yield* broker.deadLetters.get(queue, "d2")
          expect(Option.getOrThrow(d2)).toMatchObject({ id: "d2", reason: "exhausted", error: "boom d2", attempts: 5 })
          expect(Option.isNone(yield* broker.deadLetters.get(queue, "nope"))).toBe(true)
          // listing hid nothing for long
          expect(yield* broker.deadLetters.count(queue)).toBe(3)
          const moved = yield* broker.deadLetters.redrive(queue, {
            ids: ["d1"],
            prepare: (entry) => ({ id: entry.id, body: envelope(entry.id, 0), delay: 0, priority: 0 })
          })
          expect(moved).toBe(1)
          const [back] = yield* takeUntil(broker, queue, 1)
          expect(back!.id).toBe("d1")
          expect(JSON.parse(back!.body).attempts).toBe(0)
          yield* back!.ack
          expect(yield* broker.deadLetters.purge(queue, ["d2"])).toBe(1)
          expect(yield* broker.deadLetters.purge(queue)).toBe(1)
          expect(yield* broker.deadLetters.count(queue)).toBe(0)
        })
      )
    )

    it.live("deleteQueue removes the queue and its dead-letter queue; idempotent", () =>
      run((broker, queue) =>
        Effect.gen(function* () {
          yield* broker.send(queue, [{ id: "q", body: envelope("q"), delay: 0, priority: 0 }])
          yield* broker.deleteQueue(queue)
          yield* broker.deleteQueue(queue)
          expect(yield* broker.stats(queue)).toEqual({ waiting: 0, active: 0, delayed: 0, dead: 0 })
          expect(yield* broker.deadLetters.count(queue)).toBe(0)
        })
      )
    )
  })
}

describe("SqsBroker queue resolution", () => {
  it.live("a queue deleted behind the adapter's back is resolved (and created) again", () =>
    Effect.gen(function* () {
      const queue = Fauxqs.queueName("resolve")
      const options = Fauxqs.clientOptions(emulator.endpoint)
      const other = Effect.gen(function* () {
        return yield* Broker.Broker
      }).pipe(Effect.provide(Layer.fresh(SqsBroker.layer(options))))
      const broker = yield* Broker.Broker
      yield* Effect.gen(function* () {
        yield* broker.send(queue, [{ id: "1", body: envelope("1"), delay: 0, priority: 0 }])
        yield* Effect.flatMap(other, (b) => b.deleteQueue(queue))
        // the cached URL fails with NotFound; the adapter forgets it, resolves (creates) again, retries
        yield* broker.send(queue, [{ id: "2", body: envelope("2"), delay: 0, priority: 0 }])
        expect(yield* broker.stats(queue)).toEqual({ waiting: 1, active: 0, delayed: 0, dead: 0 })
        const [delivery] = yield* broker.take(queue, { max: 1, lease: 30_000, wait: 1000 })
        yield* delivery!.deadLetter({ body: delivery!.body, reason: "exhausted", error: "x", attempts: 1, failedAt: 1 })
        expect(yield* broker.deadLetters.count(queue)).toBe(1)
        yield* Effect.flatMap(other, (b) => b.deleteQueue(queue))
        // take re-resolves too
        yield* Effect.flatMap(other, (b) => b.send(queue, [{ id: "3", body: envelope("3"), delay: 0, priority: 0 }]))
        const [again] = yield* broker.take(queue, { max: 1, lease: 30_000, wait: 1000 })
        expect(again!.id).toBe("3")
      }).pipe(Effect.ensuring(Effect.ignore(broker.deleteQueue(queue))))
    }).pipe(Effect.provide(Layer.fresh(SqsBroker.layer(Fauxqs.clientOptions(emulator.endpoint)))))
  )

  it.live("with createQueues: false a missing queue is a NotFound BrokerError, and nothing is created", () =>
    Effect.gen(function* () {
      const broker = yield* Broker.Broker
      const queue = Fauxqs.queueName("missing")
      const error = yield* Effect.flip(broker.send(queue, [{ id: "1", body: "{}", delay: 0, priority: 0 }]))
      expect(error).toMatchObject({ _tag: "BrokerError", reason: "NotFound", operation: "send" })
      expect(yield* broker.stats(queue)).toEqual({ waiting: 0, active: 0, delayed: 0, dead: 0 })
      expect(yield* broker.deadLetters.list(queue, { offset: 0, limit: 10 })).toEqual([])
    }).pipe(
      Effect.provide(Layer.fresh(SqsBroker.layer({ ...Fauxqs.clientOptions(emulator.endpoint), createQueues: false })))
    )
  )
})
