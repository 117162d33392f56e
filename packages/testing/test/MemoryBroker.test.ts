import { describe, expect, it } from "@effect/vitest"
import { Broker } from "@errand/core"
import { Clock, Effect, Exit, Fiber, Option } from "effect"
import { TestClock } from "effect/testing"
import { MemoryBroker } from "../src/index.js"

const Q = "jobs"

const msg = (id: string, extra: Partial<Broker.OutgoingMessage> = {}): Broker.OutgoingMessage => ({
  id,
  body: `{"id":"${id}"}`,
  delay: 0,
  priority: 0,
  ...extra
})

const takeNow = (broker: Broker.BrokerShape, max = 10, lease = 30_000) => broker.take(Q, { max, lease, wait: 0 })

const ids = (deliveries: ReadonlyArray<Broker.Delivery>) => deliveries.map((d) => d.id)

/** Let forked fibers run until they suspend. */
const settleFibers = Effect.gen(function* () {
  for (let i = 0; i < 10; i++) yield* Effect.yieldNow
})

const record = (body: string, failedAt = 0): Broker.DeadLetterRecord => ({
  body,
  reason: "exhausted",
  error: "boom",
  attempts: 3,
  failedAt
})

describe("MemoryBroker", () => {
  describe("layer", () => {
    it.effect("provides the same broker as Broker.Broker and MemoryBroker", () =>
      Effect.gen(function* () {
        const broker = yield* Broker.Broker
        const memory = yield* MemoryBroker.MemoryBroker
        expect(broker).toBe(memory)
        expect(broker.name).toBe("memory")
        expect(broker.capabilities).toEqual({
          maxDelay: Infinity,
          priorities: true,
          ordering: "per-group",
          deduplication: true,
          leaseExtension: true,
          maxPayloadBytes: 16 * 1024 * 1024,
          persistent: false
        })
        expect(broker.validateQueueName("anything")).toBeUndefined()
        yield* broker.send(Q, [msg("a")])
        yield* memory.reset
        expect(yield* broker.stats(Q)).toEqual({ waiting: 0, active: 0, delayed: 0, dead: 0 })
      }).pipe(Effect.provide(MemoryBroker.layer()))
    )

    it.effect("reports the configured maxPayloadBytes", () =>
      Effect.gen(function* () {
        const broker = yield* MemoryBroker.make({ maxPayloadBytes: 1024 })
        expect(broker.capabilities.maxPayloadBytes).toBe(1024)
      })
    )
  })

  describe("send / take / ack", () => {
    it.effect("round trips id and body and removes the message on ack", () =>
      Effect.gen(function* () {
        const broker = yield* MemoryBroker.make()
        const results = yield* broker.send(Q, [msg("a"), msg("b", { body: "not json {" })])
        expect(results).toEqual([
          { id: "a", duplicate: false },
          { id: "b", duplicate: false }
        ])
        expect(yield* broker.stats(Q)).toEqual({ waiting: 2, active: 0, delayed: 0, dead: 0 })
        const deliveries = yield* takeNow(broker)
        expect(deliveries.map((d) => [d.id, d.body, d.receiveCount])).toEqual(
          [
            ["a", `{"id":"a"}`],
            ["b", "not json {"]
          ].map(([id, body]) => [id, body, 1])
        )
        expect(yield* broker.stats(Q)).toEqual({ waiting: 0, active: 2, delayed: 0, dead: 0 })
        for (const d of deliveries) yield* d.ack
        expect(yield* broker.stats(Q)).toEqual({ waiting: 0, active: 0, delayed: 0, dead: 0 })
        expect(yield* takeNow(broker)).toEqual([])
      })
    )

    it.effect("take honours max and leaves the rest waiting", () =>
      Effect.gen(function* () {
        const broker = yield* MemoryBroker.make()
        yield* broker.send(Q, [msg("a"), msg("b"), msg("c")])
        expect(ids(yield* takeNow(broker, 2))).toEqual(["a", "b"])
        expect(ids(yield* takeNow(broker, 0))).toEqual([])
        expect(ids(yield* takeNow(broker, 2))).toEqual(["c"])
      })
    )

    it.effect("queues never cross", () =>
      Effect.gen(function* () {
        const broker = yield* MemoryBroker.make()
        yield* broker.send("one", [msg("a")])
        yield* broker.send("two", [msg("a"), msg("b")])
        expect(ids(yield* broker.take("one", { max: 10, lease: 1000, wait: 0 }))).toEqual(["a"])
        expect(ids(yield* broker.take("two", { max: 10, lease: 1000, wait: 0 }))).toEqual(["a", "b"])
      })
    )

    it.effect("refuses a body over maxPayloadBytes (UTF-8 bytes) and sends nothing of the batch", () =>
      Effect.gen(function* () {
        const broker = yield* MemoryBroker.make({ maxPayloadBytes: 10 })
        const exit = yield* Effect.exit(
          broker.send(Q, [msg("ok", { body: "é".repeat(5) }), msg("big", { body: "é".repeat(6) })])
        )
        expect(Exit.isFailure(exit)).toBe(true)
        const error = yield* Effect.flip(broker.send(Q, [msg("big", { body: "é".repeat(6) })]))
        expect(error._tag).toBe("BrokerError")
        expect(error.reason).toBe("PayloadTooLarge")
        expect(error.operation).toBe("send")
        expect(yield* broker.stats(Q)).toEqual({ waiting: 0, active: 0, delayed: 0, dead: 0 })
        expect(yield* broker.send(Q, [msg("ok", { body: "é".repeat(5) })])).toEqual([{ id: "ok", duplicate: false }])
        expect(yield* broker.send(Q, [msg("emoji", { body: "😀😀" })])).toEqual([{ id: "emoji", duplicate: false }])
        expect((yield* Effect.flip(broker.send(Q, [msg("emoji3", { body: "😀😀😀" })]))).reason).toBe("PayloadTooLarge")
      })
    )
  })

  describe("deduplication", () => {
    it.effect("answers duplicate with the state of the message it holds", () =>
      Effect.gen(function* () {
        const broker = yield* MemoryBroker.make()
        const dup = (id: string) => broker.send(Q, [msg(id, { body: "second" })]).pipe(Effect.map((r) => r[0]))
        yield* broker.send(Q, [msg("w"), msg("d", { delay: 60_000 }), msg("a"), msg("x"), msg("c")])
        const taken = yield* takeNow(broker, 10)
        const byId = new Map(taken.map((d) => [d.id, d]))
        yield* byId.get("w")!.release
        yield* byId.get("x")!.deadLetter(record("x"))
        yield* byId.get("c")!.ack
        expect(yield* dup("w")).toEqual({ id: "w", duplicate: true, existingState: "waiting" })
        expect(yield* dup("d")).toEqual({ id: "d", duplicate: true, existingState: "delayed" })
        expect(yield* dup("a")).toEqual({ id: "a", duplicate: true, existingState: "active" })
        expect(yield* dup("x")).toEqual({ id: "x", duplicate: true, existingState: "dead" })
        expect(yield* dup("c")).toEqual({ id: "c", duplicate: true, existingState: "completed" })
        // the original message was kept
        const again = yield* takeNow(broker, 10)
        expect(again.map((d) => [d.id, d.body])).toEqual([["w", `{"id":"w"}`]])
      })
    )

    it.effect("deduplicates within one batch", () =>
      Effect.gen(function* () {
        const broker = yield* MemoryBroker.make()
        const results = yield* broker.send(Q, [msg("a"), msg("a", { body: "again" })])
        expect(results).toEqual([
          { id: "a", duplicate: false },
          { id: "a", duplicate: true, existingState: "waiting" }
        ])
        expect((yield* broker.stats(Q)).waiting).toBe(1)
      })
    )

    it.effect("forgets completed ids after the deduplication window", () =>
      Effect.gen(function* () {
        const broker = yield* MemoryBroker.make({ deduplicationWindow: 1000 })
        yield* broker.send(Q, [msg("a")])
        yield* Effect.flatMap(takeNow(broker), (ds) => ds[0]!.ack)
        yield* TestClock.adjust(999)
        expect((yield* broker.send(Q, [msg("a")]))[0]!.duplicate).toBe(true)
        yield* TestClock.adjust(1)
        expect((yield* broker.send(Q, [msg("a")]))[0]).toEqual({ id: "a", duplicate: false })
      })
    )

    it.effect("default window is 5 minutes", () =>
      Effect.gen(function* () {
        const broker = yield* MemoryBroker.make()
        yield* broker.send(Q, [msg("a")])
        yield* Effect.flatMap(takeNow(broker), (ds) => ds[0]!.ack)
        yield* TestClock.adjust("4 minutes")
        expect((yield* broker.send(Q, [msg("a")]))[0]!.existingState).toBe("completed")
        yield* TestClock.adjust("1 minute")
        expect((yield* broker.send(Q, [msg("a")]))[0]!.duplicate).toBe(false)
      })
    )

    it.effect("window 0 forgets an id once it is acknowledged", () =>
      Effect.gen(function* () {
        const broker = yield* MemoryBroker.make({ deduplicationWindow: 0 })
        yield* broker.send(Q, [msg("a")])
        expect((yield* broker.send(Q, [msg("a")]))[0]!.duplicate).toBe(true)
        yield* Effect.flatMap(takeNow(broker), (ds) => ds[0]!.ack)
        expect((yield* broker.send(Q, [msg("a")]))[0]!.duplicate).toBe(false)
      })
    )

    it.effect("deduplicationCapacity bounds the completed ids remembered", () =>
      Effect.gen(function* () {
        const broker = yield* MemoryBroker.make({ deduplicationCapacity: 2 })
        yield* broker.send(Q, [msg("a"), msg("b"), msg("c")])
        for (const d of yield* takeNow(broker)) yield* d.ack
        const results = yield* broker.send(Q, [msg("a"), msg("b"), msg("c")])
        expect(results.map((r) => r.duplicate)).toEqual([false, true, true])
      })
    )

    it.effect("purging a dead letter frees its id", () =>
      Effect.gen(function* () {
        const broker = yield* MemoryBroker.make()
        yield* broker.send(Q, [msg("a")])
        yield* Effect.flatMap(takeNow(broker), (ds) => ds[0]!.deadLetter(record("a")))
        expect((yield* broker.send(Q, [msg("a")]))[0]!.existingState).toBe("dead")
        expect(yield* broker.deadLetters.purge(Q, ["a"])).toBe(1)
        expect((yield* broker.send(Q, [msg("a")]))[0]!.duplicate).toBe(false)
      })
    )
  })

  describe("priorities", () => {
    it.effect("delivers higher priorities first, FIFO within a priority", () =>
      Effect.gen(function* () {
        const broker = yield* MemoryBroker.make()
        yield* broker.send(Q, [
          msg("p0-a", { priority: 0 }),
          msg("p5-a", { priority: 5 }),
          msg("p9-a", { priority: 9 }),
          msg("p5-b", { priority: 5 }),
          msg("p0-b", { priority: 0 }),
          msg("p9-b", { priority: 9 })
        ])
        expect(ids(yield* takeNow(broker, 3))).toEqual(["p9-a", "p9-b", "p5-a"])
        yield* broker.send(Q, [msg("p7", { priority: 7 })])
        expect(ids(yield* takeNow(broker, 10))).toEqual(["p7", "p5-b", "p0-a", "p0-b"])
      })
    )

    it.effect("a retried message keeps its priority", () =>
      Effect.gen(function* () {
        const broker = yield* MemoryBroker.make()
        yield* broker.send(Q, [msg("high", { priority: 9 })])
        const [high] = yield* takeNow(broker)
        yield* broker.send(Q, [msg("low-1"), msg("low-2")])
        yield* high!.retry({ body: "retried", delay: 0 })
        expect(ids(yield* takeNow(broker, 1))).toEqual(["high"])
      })
    )
  })

  describe("per-group ordering", () => {
    it.effect("delivers one message per group at a time, in send order", () =>
      Effect.gen(function* () {
        const broker = yield* MemoryBroker.make()
        yield* broker.send(Q, [
          msg("g1-1", { group: "g1" }),
          msg("g1-2", { group: "g1" }),
          msg("g2-1", { group: "g2" }),
          msg("free"),
          msg("g1-3", { group: "g1" }),
          msg("g2-2", { group: "g2" })
        ])
        const first = yield* takeNow(broker, 10)
        expect(ids(first)).toEqual(["g1-1", "g2-1", "free"])
        expect(yield* takeNow(broker, 10)).toEqual([])
        expect(yield* broker.stats(Q)).toEqual({ waiting: 3, active: 3, delayed: 0, dead: 0 })
        yield* first[0]!.ack
        const second = yield* takeNow(broker, 10)
        expect(ids(second)).toEqual(["g1-2"])
        yield* first[1]!.deadLetter(record("g2-1"))
        yield* second[0]!.ack
        expect(ids(yield* takeNow(broker, 10))).toEqual(["g2-2", "g1-3"])
      })
    )

    it.effect("a retried grouped message blocks its group until it is redelivered", () =>
      Effect.gen(function* () {
        const broker = yield* MemoryBroker.make()
        yield* broker.send(Q, [msg("g-1", { group: "g" }), msg("g-2", { group: "g" })])
        const [first] = yield* takeNow(broker, 10)
        yield* first!.retry({ body: "g-1 again", delay: 1000 })
        expect(yield* takeNow(broker, 10)).toEqual([])
        yield* TestClock.adjust(1000)
        const [again] = yield* takeNow(broker, 10)
        expect([again!.id, again!.body, again!.receiveCount]).toEqual(["g-1", "g-1 again", 2])
        expect(yield* takeNow(broker, 10)).toEqual([])
        yield* again!.ack
        expect(ids(yield* takeNow(broker, 10))).toEqual(["g-2"])
      })
    )

    it.effect("a delayed head holds back later messages of its group", () =>
      Effect.gen(function* () {
        const broker = yield* MemoryBroker.make()
        yield* broker.send(Q, [msg("g-1", { group: "g", delay: 500 }), msg("g-2", { group: "g" })])
        expect(yield* takeNow(broker, 10)).toEqual([])
        expect(yield* broker.stats(Q)).toEqual({ waiting: 1, active: 0, delayed: 1, dead: 0 })
        yield* TestClock.adjust(500)
        expect(ids(yield* takeNow(broker, 10))).toEqual(["g-1"])
      })
    )

    it.effect("an expired lease redelivers the group's head, not the next message", () =>
      Effect.gen(function* () {
        const broker = yield* MemoryBroker.make()
        yield* broker.send(Q, [msg("g-1", { group: "g" }), msg("g-2", { group: "g" })])
        yield* takeNow(broker, 10, 100)
        yield* TestClock.adjust(100)
        const again = yield* takeNow(broker, 10)
        expect(again.map((d) => [d.id, d.receiveCount])).toEqual([["g-1", 2]])
      })
    )
  })

  describe("delay", () => {
    it.effect("a delayed message is not delivered before its time, and is after", () =>
      Effect.gen(function* () {
        const broker = yield* MemoryBroker.make()
        yield* broker.send(Q, [msg("later", { delay: 60 * 60 * 1000 }), msg("now")])
        expect(ids(yield* takeNow(broker, 10, 2 * 60 * 60 * 1000))).toEqual(["now"])
        expect(yield* broker.stats(Q)).toEqual({ waiting: 0, active: 1, delayed: 1, dead: 0 })
        yield* TestClock.adjust("59 minutes")
        expect(yield* takeNow(broker)).toEqual([])
        yield* TestClock.adjust("1 minute")
        expect(yield* broker.stats(Q)).toEqual({ waiting: 1, active: 1, delayed: 0, dead: 0 })
        expect(ids(yield* takeNow(broker))).toEqual(["later"])
      })
    )

    it.effect("due messages are delivered in due order", () =>
      Effect.gen(function* () {
        const broker = yield* MemoryBroker.make()
        yield* broker.send(Q, [msg("c", { delay: 300 }), msg("a", { delay: 100 }), msg("b", { delay: 200 })])
        yield* TestClock.adjust(1000)
        expect(ids(yield* takeNow(broker))).toEqual(["a", "b", "c"])
      })
    )
  })

  describe("waiting take", () => {
    it.effect("is woken by a send", () =>
      Effect.gen(function* () {
        const broker = yield* MemoryBroker.make()
        const fiber = yield* Effect.forkChild(broker.take(Q, { max: 5, lease: 1000, wait: 60_000 }))
        yield* settleFibers
        expect(fiber.pollUnsafe()).toBeUndefined()
        yield* broker.send(Q, [msg("a")])
        const deliveries = yield* Fiber.join(fiber)
        expect(ids(deliveries)).toEqual(["a"])
        expect(yield* Clock.currentTimeMillis).toBe(0)
      })
    )

    it.effect("is woken when a delayed message becomes due by the clock", () =>
      Effect.gen(function* () {
        const broker = yield* MemoryBroker.make()
        yield* broker.send(Q, [msg("a", { delay: 5000 })])
        const fiber = yield* Effect.forkChild(broker.take(Q, { max: 5, lease: 1000, wait: 60_000 }))
        yield* settleFibers
        yield* TestClock.adjust(4999)
        expect(fiber.pollUnsafe()).toBeUndefined()
        yield* TestClock.adjust(1)
        expect(ids(yield* Fiber.join(fiber))).toEqual(["a"])
      })
    )

    it.effect("is woken when a lease expires", () =>
      Effect.gen(function* () {
        const broker = yield* MemoryBroker.make()
        yield* broker.send(Q, [msg("a")])
        yield* takeNow(broker, 1, 1000)
        const fiber = yield* Effect.forkChild(broker.take(Q, { max: 5, lease: 1000, wait: 60_000 }))
        yield* settleFibers
        yield* TestClock.adjust(1000)
        const deliveries = yield* Fiber.join(fiber)
        expect(deliveries.map((d) => [d.id, d.receiveCount])).toEqual([["a", 2]])
      })
    )

    it.effect("returns empty when the wait ends", () =>
      Effect.gen(function* () {
        const broker = yield* MemoryBroker.make()
        yield* broker.send(Q, [msg("a", { delay: 10_000 })])
        const fiber = yield* Effect.forkChild(broker.take(Q, { max: 5, lease: 1000, wait: 2000 }))
        yield* settleFibers
        yield* TestClock.adjust(1999)
        expect(fiber.pollUnsafe()).toBeUndefined()
        yield* TestClock.adjust(1)
        expect(yield* Fiber.join(fiber)).toEqual([])
        expect((yield* broker.stats(Q)).delayed).toBe(1)
      })
    )

    it.effect("interrupting it loses nothing", () =>
      Effect.gen(function* () {
        const broker = yield* MemoryBroker.make()
        const fiber = yield* Effect.forkChild(broker.take(Q, { max: 5, lease: 1000, wait: 60_000 }))
        yield* settleFibers
        yield* Fiber.interrupt(fiber)
        yield* broker.send(Q, [msg("a")])
        yield* settleFibers
        expect(ids(yield* takeNow(broker))).toEqual(["a"])
      })
    )

    it.effect("is woken by a deleteQueue and keeps waiting on the fresh queue", () =>
      Effect.gen(function* () {
        const broker = yield* MemoryBroker.make()
        const fiber = yield* Effect.forkChild(broker.take(Q, { max: 5, lease: 1000, wait: 60_000 }))
        yield* settleFibers
        yield* broker.deleteQueue(Q)
        yield* settleFibers
        yield* broker.send(Q, [msg("a")])
        expect(ids(yield* Fiber.join(fiber))).toEqual(["a"])
      })
    )

    it.effect("several waiting takes share the messages without duplicates", () =>
      Effect.gen(function* () {
        const broker = yield* MemoryBroker.make()
        const fibers = yield* Effect.forEach([1, 2, 3], () =>
          Effect.forkChild(broker.take(Q, { max: 1, lease: 120_000, wait: 60_000 }))
        )
        yield* settleFibers
        yield* broker.send(Q, [msg("a"), msg("b")])
        yield* settleFibers
        yield* TestClock.adjust(60_000)
        const results = yield* Effect.forEach(fibers, Fiber.join)
        expect(results.flatMap(ids).sort()).toEqual(["a", "b"])
      })
    )
  })

  describe("leases", () => {
    it.effect("an unsettled delivery is redelivered after its lease with receiveCount 2", () =>
      Effect.gen(function* () {
        const broker = yield* MemoryBroker.make()
        yield* broker.send(Q, [msg("a")])
        const [first] = yield* takeNow(broker, 1, 1000)
        expect(first!.receiveCount).toBe(1)
        yield* TestClock.adjust(999)
        expect(yield* takeNow(broker)).toEqual([])
        expect(yield* broker.stats(Q)).toEqual({ waiting: 0, active: 1, delayed: 0, dead: 0 })
        yield* TestClock.adjust(1)
        expect(yield* broker.stats(Q)).toEqual({ waiting: 1, active: 0, delayed: 0, dead: 0 })
        const [second] = yield* takeNow(broker, 1, 1000)
        expect([second!.id, second!.body, second!.receiveCount]).toEqual(["a", `{"id":"a"}`, 2])
      })
    )

    it.effect("extendLease keeps the delivery", () =>
      Effect.gen(function* () {
        const broker = yield* MemoryBroker.make()
        yield* broker.send(Q, [msg("a")])
        const [d] = yield* takeNow(broker, 1, 1000)
        yield* TestClock.adjust(800)
        yield* d!.extendLease(1000)
        yield* TestClock.adjust(800)
        expect(yield* takeNow(broker)).toEqual([])
        yield* d!.extendLease(1000)
        yield* TestClock.adjust(999)
        expect(yield* takeNow(broker)).toEqual([])
        yield* d!.ack
        yield* TestClock.adjust(10_000)
        expect(yield* takeNow(broker)).toEqual([])
        expect(yield* broker.stats(Q)).toEqual({ waiting: 0, active: 0, delayed: 0, dead: 0 })
      })
    )

    it.effect("an extended lease still expires when no longer extended", () =>
      Effect.gen(function* () {
        const broker = yield* MemoryBroker.make()
        yield* broker.send(Q, [msg("a")])
        const [d] = yield* takeNow(broker, 1, 1000)
        yield* d!.extendLease(5000)
        yield* TestClock.adjust(4999)
        expect(yield* takeNow(broker)).toEqual([])
        yield* TestClock.adjust(1)
        expect(ids(yield* takeNow(broker))).toEqual(["a"])
      })
    )

    it.effect("a settle after the lease expired is a no-op", () =>
      Effect.gen(function* () {
        const broker = yield* MemoryBroker.make()
        yield* broker.send(Q, [msg("a")])
        const [d] = yield* takeNow(broker, 1, 1000)
        yield* TestClock.adjust(1000)
        yield* d!.ack
        yield* d!.extendLease(10_000)
        expect(yield* broker.stats(Q)).toEqual({ waiting: 1, active: 0, delayed: 0, dead: 0 })
      })
    )
  })

  describe("settles", () => {
    it.effect("are idempotent: the first settle wins", () =>
      Effect.gen(function* () {
        const broker = yield* MemoryBroker.make()
        yield* broker.send(Q, [msg("a"), msg("b")])
        const [a, b] = yield* takeNow(broker)
        yield* a!.ack
        yield* a!.ack
        yield* a!.retry({ body: "x", delay: 0 })
        yield* a!.deadLetter(record("a"))
        yield* a!.release
        yield* b!.deadLetter(record("b"))
        yield* b!.ack
        yield* b!.release
        expect(yield* broker.stats(Q)).toEqual({ waiting: 0, active: 0, delayed: 0, dead: 1 })
        expect(yield* takeNow(broker)).toEqual([])
      })
    )

    it.effect("a stale settle after redelivery to someone else is a no-op", () =>
      Effect.gen(function* () {
        const broker = yield* MemoryBroker.make()
        yield* broker.send(Q, [msg("a")])
        const [first] = yield* takeNow(broker, 1, 1000)
        yield* TestClock.adjust(1000)
        const [second] = yield* takeNow(broker, 1, 1000)
        expect(second!.receiveCount).toBe(2)
        yield* first!.ack
        yield* first!.deadLetter(record("a"))
        yield* first!.retry({ body: "stale", delay: 0 })
        yield* first!.release
        yield* first!.extendLease(60_000)
        expect(yield* broker.stats(Q)).toEqual({ waiting: 0, active: 1, delayed: 0, dead: 0 })
        // the first delivery's extension did not extend the second's lease
        yield* TestClock.adjust(1000)
        const [third] = yield* takeNow(broker, 1, 1000)
        expect([third!.body, third!.receiveCount]).toEqual([`{"id":"a"}`, 3])
        yield* second!.ack
        expect((yield* broker.stats(Q)).active).toBe(1)
        yield* third!.ack
        expect(yield* broker.stats(Q)).toEqual({ waiting: 0, active: 0, delayed: 0, dead: 0 })
      })
    )

    it.effect("a settle on a delivery that was retried and taken again is a no-op", () =>
      Effect.gen(function* () {
        const broker = yield* MemoryBroker.make()
        yield* broker.send(Q, [msg("a")])
        const [first] = yield* takeNow(broker)
        yield* first!.retry({ body: "v2", delay: 0 })
        const [second] = yield* takeNow(broker)
        yield* first!.ack
        expect((yield* broker.stats(Q)).active).toBe(1)
        yield* second!.ack
        expect((yield* broker.stats(Q)).active).toBe(0)
      })
    )

    it.effect("retry replaces the body and delays the message", () =>
      Effect.gen(function* () {
        const broker = yield* MemoryBroker.make()
        yield* broker.send(Q, [msg("a")])
        const [d] = yield* takeNow(broker)
        yield* d!.retry({ body: "attempt 2", delay: 1000 })
        expect(yield* broker.stats(Q)).toEqual({ waiting: 0, active: 0, delayed: 1, dead: 0 })
        expect(yield* takeNow(broker)).toEqual([])
        yield* TestClock.adjust(999)
        expect(yield* takeNow(broker)).toEqual([])
        yield* TestClock.adjust(1)
        const [again] = yield* takeNow(broker)
        expect([again!.id, again!.body, again!.receiveCount]).toEqual(["a", "attempt 2", 2])
        expect(d!.body).toBe(`{"id":"a"}`)
      })
    )

    it.effect("release puts the message back now, at the head, without counting the delivery", () =>
      Effect.gen(function* () {
        const broker = yield* MemoryBroker.make()
        yield* broker.send(Q, [msg("a"), msg("b")])
        const [a] = yield* takeNow(broker, 1)
        yield* a!.release
        expect(yield* broker.stats(Q)).toEqual({ waiting: 2, active: 0, delayed: 0, dead: 0 })
        const again = yield* takeNow(broker, 10)
        expect(again.map((d) => [d.id, d.receiveCount])).toEqual([
          ["a", 1],
          ["b", 1]
        ])
      })
    )

    it.effect("deadLetter stores the record under the message id", () =>
      Effect.gen(function* () {
        const broker = yield* MemoryBroker.make()
        yield* broker.send(Q, [msg("a")])
        const [d] = yield* takeNow(broker)
        yield* d!.deadLetter({ body: "raw", reason: "undecodable", error: "NotJson", attempts: 0, failedAt: 42 })
        expect(yield* broker.deadLetters.get(Q, "a")).toEqual(
          Option.some({ id: "a", body: "raw", reason: "undecodable", error: "NotJson", attempts: 0, failedAt: 42 })
        )
        expect(yield* broker.stats(Q)).toEqual({ waiting: 0, active: 0, delayed: 0, dead: 1 })
      })
    )
  })

  describe("dead letters", () => {
    const fill = (broker: Broker.BrokerShape, n: number) =>
      Effect.gen(function* () {
        yield* broker.send(
          Q,
          Array.from({ length: n }, (_, i) => msg(`m${i}`))
        )
        const deliveries = yield* takeNow(broker, n)
        for (const [i, d] of deliveries.entries()) yield* d.deadLetter(record(`body ${i}`, i))
      })

    it.effect("list (oldest first, offset/limit), get, count", () =>
      Effect.gen(function* () {
        const broker = yield* MemoryBroker.make()
        yield* fill(broker, 5)
        expect(yield* broker.deadLetters.count(Q)).toBe(5)
        const all = yield* broker.deadLetters.list(Q, { offset: 0, limit: 100 })
        expect(all.map((e) => e.id)).toEqual(["m0", "m1", "m2", "m3", "m4"])
        expect(all[2]).toEqual({
          id: "m2",
          body: "body 2",
          reason: "exhausted",
          error: "boom",
          attempts: 3,
          failedAt: 2
        })
        expect((yield* broker.deadLetters.list(Q, { offset: 1, limit: 2 })).map((e) => e.id)).toEqual(["m1", "m2"])
        expect(yield* broker.deadLetters.list(Q, { offset: 5, limit: 2 })).toEqual([])
        expect(yield* broker.deadLetters.list(Q, { offset: 0, limit: 0 })).toEqual([])
        expect(Option.isSome(yield* broker.deadLetters.get(Q, "m4"))).toBe(true)
        expect(yield* broker.deadLetters.get(Q, "nope")).toEqual(Option.none())
        expect(yield* broker.deadLetters.count("other")).toBe(0)
        expect(yield* broker.deadLetters.list("other", { offset: 0, limit: 10 })).toEqual([])
      })
    )

    it.effect("redrive by ids sends prepare(entry) back and removes the entry", () =>
      Effect.gen(function* () {
        const broker = yield* MemoryBroker.make()
        yield* fill(broker, 3)
        const seen: Array<string> = []
        const moved = yield* broker.deadLetters.redrive(Q, {
          ids: ["m1", "missing"],
          prepare: (entry) => {
            seen.push(entry.id)
            return { id: entry.id, body: `reset ${entry.body}`, delay: 0, priority: 0 }
          }
        })
        expect(moved).toBe(1)
        expect(seen).toEqual(["m1"])
        expect(yield* broker.stats(Q)).toEqual({ waiting: 1, active: 0, delayed: 0, dead: 2 })
        const [d] = yield* takeNow(broker)
        expect([d!.id, d!.body, d!.receiveCount]).toEqual(["m1", "reset body 1", 1])
        expect(yield* broker.deadLetters.get(Q, "m1")).toEqual(Option.none())
      })
    )

    it.effect("redrive all", () =>
      Effect.gen(function* () {
        const broker = yield* MemoryBroker.make()
        yield* fill(broker, 3)
        const moved = yield* broker.deadLetters.redrive(Q, {
          prepare: (entry) => ({ id: entry.id, body: entry.body, delay: 0, priority: 0 })
        })
        expect(moved).toBe(3)
        expect(yield* broker.deadLetters.count(Q)).toBe(0)
        expect(ids(yield* takeNow(broker))).toEqual(["m0", "m1", "m2"])
        expect(yield* broker.deadLetters.redrive("other", { prepare: (e) => ({ ...e, delay: 0, priority: 0 }) })).toBe(
          0
        )
      })
    )

    it.effect("redrive moves an entry whose id is already queued without doubling it", () =>
      Effect.gen(function* () {
        const broker = yield* MemoryBroker.make()
        yield* fill(broker, 1)
        yield* broker.send(Q, [msg("live")])
        const moved = yield* broker.deadLetters.redrive(Q, {
          prepare: (entry) => ({ id: "live", body: entry.body, delay: 0, priority: 0 })
        })
        expect(moved).toBe(1)
        expect(yield* broker.stats(Q)).toEqual({ waiting: 1, active: 0, delayed: 0, dead: 0 })
        expect((yield* takeNow(broker)).map((d) => [d.id, d.body])).toEqual([["live", `{"id":"live"}`]])
      })
    )

    it.effect("redrive refuses a prepared body over the limit and keeps the entry", () =>
      Effect.gen(function* () {
        const broker = yield* MemoryBroker.make({ maxPayloadBytes: 100 })
        yield* fill(broker, 1)
        const error = yield* Effect.flip(
          broker.deadLetters.redrive(Q, {
            prepare: (entry) => ({ id: entry.id, body: "x".repeat(101), delay: 0, priority: 0 })
          })
        )
        expect(error.reason).toBe("PayloadTooLarge")
        expect(yield* broker.deadLetters.count(Q)).toBe(1)
      })
    )

    it.effect("purge by ids and all", () =>
      Effect.gen(function* () {
        const broker = yield* MemoryBroker.make()
        yield* fill(broker, 4)
        expect(yield* broker.deadLetters.purge(Q, ["m0", "m2", "missing", "m0"])).toBe(2)
        expect((yield* broker.deadLetters.list(Q, { offset: 0, limit: 10 })).map((e) => e.id)).toEqual(["m1", "m3"])
        expect(yield* broker.deadLetters.purge(Q)).toBe(2)
        expect(yield* broker.deadLetters.count(Q)).toBe(0)
        expect(yield* broker.deadLetters.purge("other")).toBe(0)
      })
    )
  })

  describe("stats and deleteQueue", () => {
    it.effect("stats count waiting, active, delayed and dead", () =>
      Effect.gen(function* () {
        const broker = yield* MemoryBroker.make()
        expect(yield* broker.stats(Q)).toEqual({ waiting: 0, active: 0, delayed: 0, dead: 0 })
        yield* broker.send(Q, [msg("a"), msg("b"), msg("c"), msg("d", { delay: 1000 }), msg("e")])
        const [a, b] = yield* takeNow(broker, 2)
        yield* a!.deadLetter(record("a"))
        expect(yield* broker.stats(Q)).toEqual({ waiting: 2, active: 1, delayed: 1, dead: 1 })
        yield* b!.retry({ body: "b", delay: 500 })
        expect(yield* broker.stats(Q)).toEqual({ waiting: 2, active: 0, delayed: 2, dead: 1 })
        yield* TestClock.adjust(1000)
        expect(yield* broker.stats(Q)).toEqual({ waiting: 4, active: 0, delayed: 0, dead: 1 })
      })
    )

    it.effect("deleteQueue drops everything for that queue only, and is idempotent", () =>
      Effect.gen(function* () {
        const broker = yield* MemoryBroker.make()
        yield* broker.send(Q, [msg("a"), msg("b"), msg("c", { delay: 1000 })])
        yield* broker.send("other", [msg("a")])
        const [a, b] = yield* takeNow(broker, 2)
        yield* b!.deadLetter(record("b"))
        yield* broker.deleteQueue(Q)
        yield* broker.deleteQueue(Q)
        expect(yield* broker.stats(Q)).toEqual({ waiting: 0, active: 0, delayed: 0, dead: 0 })
        expect(yield* broker.deadLetters.count(Q)).toBe(0)
        yield* a!.ack
        yield* a!.release
        expect(yield* broker.stats(Q)).toEqual({ waiting: 0, active: 0, delayed: 0, dead: 0 })
        expect((yield* broker.send(Q, [msg("a")]))[0]!.duplicate).toBe(false)
        yield* TestClock.adjust(2000)
        expect(ids(yield* takeNow(broker))).toEqual(["a"])
        expect(yield* broker.stats("other")).toEqual({ waiting: 1, active: 0, delayed: 0, dead: 0 })
      })
    )
  })

  describe("volume", () => {
    it.effect("sends 10,000 messages and drains each exactly once, in priority then FIFO order", () =>
      Effect.gen(function* () {
        const broker = yield* MemoryBroker.make()
        const n = 10_000
        const messages = Array.from({ length: n }, (_, i) => msg(`m${i}`, { priority: i % 3 }))
        const results = yield* broker.send(Q, messages)
        expect(results.every((r) => !r.duplicate)).toBe(true)
        expect((yield* broker.stats(Q)).waiting).toBe(n)
        const order: Array<string> = []
        for (;;) {
          const batch = yield* broker.take(Q, { max: 100, lease: 30_000, wait: 0 })
          if (batch.length === 0) break
          for (const d of batch) {
            order.push(d.id)
            yield* d.ack
          }
        }
        const expected = [2, 1, 0].flatMap((p) => messages.filter((_, i) => i % 3 === p).map((m) => m.id))
        expect(order).toEqual(expected)
        expect(yield* broker.stats(Q)).toEqual({ waiting: 0, active: 0, delayed: 0, dead: 0 })
      })
    )

    it.effect("many concurrent takers with waits process every message once", () =>
      Effect.gen(function* () {
        const broker = yield* MemoryBroker.make()
        const seen = new Map<string, number>()
        const worker = Effect.gen(function* () {
          for (;;) {
            const batch = yield* broker.take(Q, { max: 10, lease: 30_000, wait: 1000 })
            if (batch.length === 0) return
            for (const d of batch) {
              seen.set(d.id, (seen.get(d.id) ?? 0) + 1)
              yield* d.ack
            }
          }
        })
        const workers = yield* Effect.forEach(Array.from({ length: 20 }), () => Effect.forkChild(worker))
        yield* settleFibers
        for (let i = 0; i < 20; i++) {
          yield* broker.send(
            Q,
            Array.from({ length: 100 }, (_, j) => msg(`m${i}-${j}`, { group: j % 7 === 0 ? `g${j % 5}` : undefined }))
          )
          yield* settleFibers
        }
        for (let i = 0; i < 10 && workers.some((f) => f.pollUnsafe() === undefined); i++) yield* TestClock.adjust(1000)
        yield* Effect.forEach(workers, Fiber.join)
        expect(seen.size).toBe(2000)
        expect([...seen.values()].every((count) => count === 1)).toBe(true)
      })
    )
  })
})
