import { describe, expect, it } from "@effect/vitest"
import { Broker, Envelope } from "@errand/core"
import { Effect, Layer } from "effect"
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

const envelope = (id: string, extra: Partial<Envelope.Envelope> = {}): string =>
  Envelope.encode({
    v: 1,
    id,
    job: "test",
    payload: {},
    attempts: 0,
    maxAttempts: 5,
    enqueuedAt: 1,
    priority: 0,
    ...extra
  })

const run = <A, E>(f: (broker: Broker.BrokerShape, queue: string) => Effect.Effect<A, E>) =>
  Effect.gen(function* () {
    const broker = yield* Broker.Broker
    const queue = Fauxqs.queueName("fifo", true)
    return yield* f(broker, queue).pipe(Effect.ensuring(Effect.ignore(broker.deleteQueue(queue))))
  }).pipe(Effect.provide(Layer.fresh(SqsBroker.layer({ ...Fauxqs.clientOptions(emulator.endpoint), fifo: true }))))

describe("SqsBroker FIFO", () => {
  it.live("a second send with the same id answers duplicate and is not delivered twice", () =>
    run((broker, queue) =>
      Effect.gen(function* () {
        const first = yield* broker.send(queue, [{ id: "dup", body: envelope("dup"), delay: 0, priority: 0 }])
        expect(first[0]!.duplicate).toBe(false)
        const second = yield* broker.send(queue, [
          { id: "dup", body: envelope("dup"), delay: 0, priority: 0 },
          { id: "other", body: envelope("other"), delay: 0, priority: 0 }
        ])
        expect(second.map((r) => r.duplicate)).toEqual([true, false])
        const stats = yield* broker.stats(queue)
        expect(stats.waiting).toBe(2)
      })
    )
  )

  it.live("messages without a group are independent (group = job id): all can be in flight at once", () =>
    run((broker, queue) =>
      Effect.gen(function* () {
        yield* broker.send(
          queue,
          ["a", "b", "c"].map((id) => ({ id, body: envelope(id), delay: 0, priority: 0 }))
        )
        const got = yield* broker.take(queue, { max: 10, lease: 30_000, wait: 1000 })
        expect(got.map((d) => d.id).sort()).toEqual(["a", "b", "c"])
      })
    )
  )

  it.live("one group is delivered in send order, one at a time", () =>
    run((broker, queue) =>
      Effect.gen(function* () {
        yield* broker.send(
          queue,
          ["1", "2", "3"].map((id) => ({ id, body: envelope(id), delay: 0, priority: 0, group: "g" }))
        )
        const order: Array<string> = []
        for (let i = 0; i < 3; i++) {
          const got = yield* broker.take(queue, { max: 1, lease: 30_000, wait: 1000 })
          expect(got.length).toBe(1)
          // while it is in flight, nothing else of the group comes
          expect((yield* broker.take(queue, { max: 1, lease: 30_000, wait: 0 })).length).toBe(0)
          order.push(got[0]!.id)
          yield* got[0]!.ack
        }
        expect(order).toEqual(["1", "2", "3"])
      })
    )
  )

  it.live("a delay hop (unchanged body) hides the message until notBefore instead of re-sending it", () =>
    run((broker, queue) =>
      Effect.gen(function* () {
        const body = envelope("h", { notBefore: Date.now() + 2000 })
        yield* broker.send(queue, [{ id: "h", body, delay: 0, priority: 0 }])
        const [first] = yield* broker.take(queue, { max: 1, lease: 30_000, wait: 1000 })
        const hopped = Date.now()
        yield* first!.retry({ body, delay: 0 })
        expect((yield* broker.take(queue, { max: 1, lease: 30_000, wait: 0 })).length).toBe(0)
        let again: ReadonlyArray<Broker.Delivery> = []
        while (again.length === 0 && Date.now() - hopped < 10_000) {
          again = yield* broker.take(queue, { max: 1, lease: 30_000, wait: 1000 })
        }
        expect(again[0]!.id).toBe("h")
        expect(again[0]!.body).toBe(body)
        expect(Date.now() - hopped).toBeGreaterThanOrEqual(1000)
        yield* again[0]!.ack
      })
    )
  )

  it.live("a retry re-send is not swallowed by FIFO deduplication, and keeps the group", () =>
    run((broker, queue) =>
      Effect.gen(function* () {
        yield* broker.send(queue, [{ id: "r", body: envelope("r"), delay: 0, priority: 0, group: "g1" }])
        for (let attempt = 1; attempt <= 3; attempt++) {
          const [d] = yield* broker.take(queue, { max: 1, lease: 30_000, wait: 2000 })
          expect(d).toBeDefined()
          expect(JSON.parse(d!.body).attempts).toBe(attempt - 1)
          yield* d!.retry({ body: envelope("r", { attempts: attempt }), delay: 0 })
        }
        const [last] = yield* broker.take(queue, { max: 1, lease: 30_000, wait: 2000 })
        expect(JSON.parse(last!.body).attempts).toBe(3)
        yield* last!.ack
      })
    )
  )

  it.live("send with a per-message delay is refused (FIFO has queue-level delay only)", () =>
    run((broker, queue) =>
      Effect.gen(function* () {
        const error = yield* Effect.flip(
          broker.send(queue, [{ id: "d", body: envelope("d"), delay: 1000, priority: 0 }])
        )
        expect(error._tag).toBe("BrokerError")
        expect(error.message).toMatch(/no per-message delay/u)
      })
    )
  )
})

describe("SqsBroker FIFO batches", () => {
  it.live("a group spread over several batches keeps its send order", () =>
    run((broker, queue) =>
      Effect.gen(function* () {
        const ids = Array.from({ length: 35 }, (_, i) => `m${String(i).padStart(2, "0")}`)
        yield* broker.send(
          queue,
          ids.map((id) => ({ id, body: envelope(id), delay: 0, priority: 0, group: "one" }))
        )
        const order: Array<string> = []
        while (order.length < ids.length) {
          const got = yield* broker.take(queue, { max: 10, lease: 30_000, wait: 1000 })
          expect(got.length).toBeGreaterThan(0)
          for (const d of got) order.push(d.id)
          yield* Effect.forEach(got, (d) => d.ack, { concurrency: "unbounded" })
        }
        expect(order).toEqual(ids)
      })
    )
  )
})
