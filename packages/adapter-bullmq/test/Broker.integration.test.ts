import { describe, expect, it } from "@effect/vitest"
import { Broker } from "@errand/core"
import { ConfigProvider, Context, Effect, Layer, Option } from "effect"
import { Redis } from "ioredis"
import { BullMQBroker } from "../src/index.js"
import { message, redisUrl, takeN, testLayer, uniquePrefix, uniqueQueue } from "./helpers.js"

const withQueue = <A, E>(
  f: (broker: Broker.BrokerShape, queue: string) => Effect.Effect<A, E, BullMQBroker.BullMQBroker>
) =>
  Effect.gen(function* () {
    const broker = yield* Broker.Broker
    const queue = uniqueQueue()
    return yield* f(broker, queue).pipe(Effect.ensuring(Effect.orDie(broker.deleteQueue(queue))))
  }).pipe(Effect.provide(testLayer()))

describe("BullMQBroker contract", () => {
  it.live("round trip: body and id arrive intact, ack removes the job", () =>
    withQueue((broker, queue) =>
      Effect.gen(function* () {
        const body = JSON.stringify({ hello: "wörld", n: 1, nested: { a: [1, 2] } })
        const [result] = yield* broker.send(queue, [message("a:b%c", body)])
        expect(result).toEqual({ id: "a:b%c", duplicate: false })
        const [delivery] = yield* takeN(broker, queue, 1)
        expect(delivery?.id).toBe("a:b%c")
        expect(delivery?.body).toBe(body)
        expect(delivery?.receiveCount).toBe(1)
        expect(yield* broker.stats(queue)).toEqual({ waiting: 0, active: 1, delayed: 0, dead: 0 })
        yield* delivery!.ack
        yield* delivery!.ack // idempotent
        expect(yield* broker.stats(queue)).toEqual({ waiting: 0, active: 0, delayed: 0, dead: 0 })
        expect(yield* broker.take(queue, { max: 1, lease: 1000, wait: 200 })).toEqual([])
      })
    )
  )

  it.live("dedup: a second send with the same id answers duplicate with its state", () =>
    withQueue((broker, queue) =>
      Effect.gen(function* () {
        yield* broker.send(queue, [message("x")])
        const [again] = yield* broker.send(queue, [message("x"), message("y")])
        expect(again).toEqual({ id: "x", duplicate: true, existingState: "waiting" })
        const deliveries = yield* takeN(broker, queue, 2)
        const x = deliveries.find((d) => d.id === "x")!
        expect((yield* broker.send(queue, [message("x")]))[0]?.existingState).toBe("active")
        yield* x.ack
        expect((yield* broker.send(queue, [message("x")]))[0]?.existingState).toBe("completed")
      })
    )
  )

  it.live("priority: higher priority is delivered first", () =>
    withQueue((broker, queue) =>
      Effect.gen(function* () {
        yield* broker.send(queue, [
          message("p0", "0", { priority: 0 }),
          message("p9", "9", { priority: 9 }),
          message("p5", "5", { priority: 5 }),
          message("p0b", "0b", { priority: 0 })
        ])
        const order: Array<string> = []
        for (let i = 0; i < 4; i++) {
          const [d] = yield* takeN(broker, queue, 1)
          order.push(d!.id)
          yield* d!.ack
        }
        expect(order).toEqual(["p9", "p5", "p0", "p0b"])
      })
    )
  )

  it.live("delay: not before the delay, promptly after (blocking take wakes up)", () =>
    withQueue((broker, queue) =>
      Effect.gen(function* () {
        const sentAt = Date.now()
        yield* broker.send(queue, [message("d", "d", { delay: 700 })])
        expect((yield* broker.stats(queue)).delayed).toBe(1)
        const [d] = yield* broker.take(queue, { max: 1, lease: 5000, wait: 3000 })
        const elapsed = Date.now() - sentAt
        expect(d?.id).toBe("d")
        expect(elapsed).toBeGreaterThanOrEqual(690)
        expect(elapsed).toBeLessThan(3000)
        yield* d!.ack
      })
    )
  )

  it.live("retry replaces the body, keeps the id and honours the delay", () =>
    withQueue((broker, queue) =>
      Effect.gen(function* () {
        yield* broker.send(queue, [message("r", "v1", { priority: 3 })])
        const [first] = yield* takeN(broker, queue, 1)
        const at = Date.now()
        yield* first!.retry({ body: "v2", delay: 400 })
        yield* first!.ack // first settle wins: no-op
        expect((yield* broker.stats(queue)).delayed).toBe(1)
        const [second] = yield* takeN(broker, queue, 1)
        expect(Date.now() - at).toBeGreaterThanOrEqual(390)
        expect(second?.id).toBe("r")
        expect(second?.body).toBe("v2")
        expect(second?.receiveCount).toBe(2)
        yield* second!.retry({ body: "v3", delay: 0 })
        const [third] = yield* takeN(broker, queue, 1)
        expect(third?.body).toBe("v3")
        yield* third!.ack
      })
    )
  )

  it.live("release gives the job back at once", () =>
    withQueue((broker, queue) =>
      Effect.gen(function* () {
        yield* broker.send(queue, [message("rel", "body")])
        const [d] = yield* takeN(broker, queue, 1)
        yield* d!.release
        const [again] = yield* broker.take(queue, { max: 1, lease: 1000, wait: 1000 })
        expect(again?.id).toBe("rel")
        expect(again?.body).toBe("body")
        yield* again!.ack
      })
    )
  )

  it.live("take returns at most max, and each job once", () =>
    withQueue((broker, queue) =>
      Effect.gen(function* () {
        yield* broker.send(
          queue,
          Array.from({ length: 50 }, (_, i) => message(`m${i}`))
        )
        const first = yield* broker.take(queue, { max: 20, lease: 30_000, wait: 1000 })
        expect(first.length).toBe(20)
        const rest = yield* takeN(broker, queue, 30)
        const ids = new Set([...first, ...rest].map((d) => d.id))
        expect(ids.size).toBe(50)
        yield* Effect.forEach([...first, ...rest], (d) => d.ack, { concurrency: 10 })
        expect(yield* broker.stats(queue)).toEqual({ waiting: 0, active: 0, delayed: 0, dead: 0 })
      })
    )
  )

  it.live("a bulk send of core-made ids larger than one write stores every job once, in order", () =>
    withQueue((broker, queue) =>
      Effect.gen(function* () {
        // 601: two full groups of 250 and a partial one
        const ids = Array.from({ length: 601 }, (_, i) => `u${i}`)
        const results = yield* broker.send(
          queue,
          ids.map((id) => message(id, `{"n":"${id}"}`, { unique: true }))
        )
        expect(results).toEqual(ids.map((id) => ({ id, duplicate: false })))
        expect(yield* broker.stats(queue)).toEqual({ waiting: 601, active: 0, delayed: 0, dead: 0 })
        const taken = yield* takeN(broker, queue, 601)
        expect(taken.map((d) => d.id)).toEqual(ids)
        expect(taken.map((d) => d.body)).toEqual(ids.map((id) => `{"n":"${id}"}`))
        yield* Effect.forEach(taken, (d) => d.ack, { concurrency: 50, discard: true })
        expect(yield* broker.stats(queue)).toEqual({ waiting: 0, active: 0, delayed: 0, dead: 0 })
      })
    )
  )

  it.live("extendLease keeps a job past its lease; without it the job comes back", () =>
    withQueue((broker, queue) =>
      Effect.gen(function* () {
        yield* broker.send(queue, [message("l1"), message("l2")])
        const deliveries = yield* takeN(broker, queue, 2, { lease: 600 })
        const kept = deliveries.find((d) => d.id === "l1")!
        const start = Date.now()
        const back: Array<Broker.Delivery> = []
        while (Date.now() - start < 6000 && back.length === 0) {
          yield* kept.extendLease(600)
          back.push(...(yield* broker.take(queue, { max: 2, lease: 5000, wait: 200 })))
        }
        expect(back.map((d) => d.id)).toEqual(["l2"])
        yield* kept.ack
        yield* back[0]!.ack
      })
    )
  )
})

describe("dead letters", () => {
  it.live("deadLetter keeps body and error; list/get/count/redrive/purge; re-send answers dead", () =>
    withQueue((broker, queue) =>
      Effect.gen(function* () {
        yield* broker.send(queue, [message("d1", "b1"), message("d2", "b2"), message("d3", "b3")])
        const deliveries = yield* takeN(broker, queue, 3)
        let t = 1000
        for (const d of deliveries.sort((a, b) => a.id.localeCompare(b.id))) {
          yield* d.deadLetter({ body: d.body, reason: "exhausted", error: `boom ${d.id}`, attempts: 3, failedAt: t++ })
          yield* d.ack // no-op after the first settle
        }
        expect(yield* broker.deadLetters.count(queue)).toBe(3)
        expect((yield* broker.stats(queue)).dead).toBe(3)
        const listed = yield* broker.deadLetters.list(queue, { offset: 0, limit: 10 })
        expect(listed.map((e) => e.id)).toEqual(["d1", "d2", "d3"])
        expect(listed[0]).toEqual({
          id: "d1",
          body: "b1",
          reason: "exhausted",
          error: "boom d1",
          attempts: 3,
          failedAt: 1000
        })
        expect((yield* broker.deadLetters.list(queue, { offset: 1, limit: 1 })).map((e) => e.id)).toEqual(["d2"])
        expect(Option.getOrThrow(yield* broker.deadLetters.get(queue, "d2")).body).toBe("b2")
        expect(Option.isNone(yield* broker.deadLetters.get(queue, "nope"))).toBe(true)

        const [dup] = yield* broker.send(queue, [message("d1")])
        expect(dup).toEqual({ id: "d1", duplicate: true, existingState: "dead" })

        const moved = yield* broker.deadLetters.redrive(queue, {
          ids: ["d1"],
          prepare: (entry) => message(entry.id, `${entry.body}-again`)
        })
        expect(moved).toBe(1)
        const [again] = yield* takeN(broker, queue, 1)
        expect(again?.id).toBe("d1")
        expect(again?.body).toBe("b1-again")
        yield* again!.ack
        expect(yield* broker.deadLetters.count(queue)).toBe(2)

        expect(yield* broker.deadLetters.purge(queue, ["d2"])).toBe(1)
        expect(yield* broker.deadLetters.count(queue)).toBe(1)
        // A purged id is free again.
        expect((yield* broker.send(queue, [message("d2")]))[0]?.duplicate).toBe(false)
        expect(yield* broker.deadLetters.purge(queue)).toBe(1)
        expect(yield* broker.deadLetters.count(queue)).toBe(0)
      })
    )
  )
})

describe("dead letters, in bulk and by hand", () => {
  it.live("redrive all and purge all page through more than one batch, oldest first", () =>
    withQueue((broker, queue) =>
      Effect.gen(function* () {
        const n = 230
        yield* broker.send(
          queue,
          Array.from({ length: n }, (_, i) => message(`b${i}`, `body-${i}`))
        )
        const all = yield* takeN(broker, queue, n, { timeout: 30_000 })
        expect(all.length).toBe(n)
        yield* Effect.forEach(
          all,
          (d) =>
            d.deadLetter({
              body: d.body,
              reason: "exhausted",
              error: "e",
              attempts: 2,
              failedAt: 1_000_000 + Number(d.id.slice(1))
            }),
          { concurrency: 20 }
        )
        expect(yield* broker.deadLetters.count(queue)).toBe(n)
        const page = yield* broker.deadLetters.list(queue, { offset: 100, limit: 3 })
        expect(page.map((e) => e.id)).toEqual(["b100", "b101", "b102"])

        const order: Array<string> = []
        const moved = yield* broker.deadLetters.redrive(queue, {
          prepare: (entry) => {
            order.push(entry.id)
            return message(entry.id, entry.body)
          }
        })
        expect(moved).toBe(n)
        expect(order).toEqual(Array.from({ length: n }, (_, i) => `b${i}`))
        expect(yield* broker.stats(queue)).toEqual({ waiting: n, active: 0, delayed: 0, dead: 0 })

        const again = yield* takeN(broker, queue, n, { timeout: 30_000 })
        yield* Effect.forEach(
          again,
          (d) => d.deadLetter({ body: d.body, reason: "unrecoverable", error: "e", attempts: 1, failedAt: Date.now() }),
          { concurrency: 20 }
        )
        expect(yield* broker.deadLetters.purge(queue)).toBe(n)
        expect(yield* broker.deadLetters.count(queue)).toBe(0)
        // every id is free again
        const resent = yield* broker.send(queue, [message("b0"), message("b229")])
        expect(resent.map((r) => r.duplicate)).toEqual([false, false])
      })
    )
  )

  it.live("an id whose job failed outside the DLQ answers duplicate with state failed", () =>
    withQueue((broker, queue) =>
      Effect.gen(function* () {
        const self = yield* BullMQBroker.BullMQBroker
        yield* broker.send(queue, [message("f1")])
        const [d] = yield* takeN(broker, queue, 1)
        yield* d!.deadLetter({ body: d!.body, reason: "exhausted", error: "x", attempts: 1, failedAt: 1 })
        // Someone deletes the DLQ record by hand, leaving BullMQ's failed job.
        yield* Effect.promise(async () => {
          const redis = new Redis(redisUrl)
          await redis.hdel(`${self.prefix}:${queue}:errand-dlq`, "f1")
          redis.disconnect()
        })
        expect((yield* broker.send(queue, [message("f1")]))[0]).toEqual({
          id: "f1",
          duplicate: true,
          existingState: "failed"
        })
      })
    )
  )
})

describe("layerConfig", () => {
  it.live("reads REDIS_URL and ERRAND_PREFIX", () =>
    Effect.gen(function* () {
      const prefix = uniquePrefix()
      const context = yield* Layer.build(BullMQBroker.layerConfig()).pipe(
        Effect.provide(ConfigProvider.layer(ConfigProvider.fromUnknown({ REDIS_URL: redisUrl, ERRAND_PREFIX: prefix })))
      )
      const broker = Context.get(context, BullMQBroker.BullMQBroker)
      expect(broker.prefix).toBe(prefix)
      expect(Context.get(context, Broker.Broker).name).toBe("bullmq")
    }).pipe(Effect.scoped)
  )
})
