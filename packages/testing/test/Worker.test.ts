import { describe, expect, it } from "@effect/vitest"
import { Broker, DeadLetters, Envelope, Job, Producer, Worker } from "@errand/core"
import { Effect, Layer, ManagedRuntime, Schedule, Schema } from "effect"
import * as MemoryBroker from "../src/MemoryBroker.js"

// Regressions found by review, against the embedded broker in real time.

const Payload = Schema.Struct({ n: Schema.Number })
const jobOn = (queue: string, attempts = 3) =>
  Job.make("work", { queue, payload: Payload, attempts, backoff: Schedule.spaced("10 millis") })

const until = (what: string, condition: () => boolean, timeout = 10_000) =>
  Effect.gen(function* () {
    const deadline = Date.now() + timeout
    while (!condition()) {
      if (Date.now() > deadline) return yield* Effect.die(new Error(`timed out waiting for ${what}`))
      yield* Effect.sleep(20)
    }
  })

describe("Worker", () => {
  it.live("Worker.layer keeps consuming when built by Layer.mergeAll or a ManagedRuntime", () =>
    Effect.gen(function* () {
      const job = jobOn("layered")
      const seen: Array<number> = []
      const worker = Worker.layer({
        queue: "layered",
        handlers: [Worker.handler(job, ({ n }) => Effect.sync(() => seen.push(n)))]
      })
      const broker = MemoryBroker.layer()
      const runtime = ManagedRuntime.make(
        Layer.mergeAll(worker, Producer.layer, Layer.empty).pipe(Layer.provideMerge(broker))
      )
      yield* Effect.addFinalizer(() => Effect.promise(() => runtime.dispose()))
      // the worker's builder fiber is long gone by the time these are enqueued
      yield* Effect.promise(() => runtime.runPromise(Effect.sleep(200)))
      for (let n = 0; n < 5; n++) yield* Effect.promise(() => runtime.runPromise(Producer.enqueue(job, { n })))
      yield* until("five jobs", () => seen.length === 5)
      expect(seen.sort()).toEqual([0, 1, 2, 3, 4])
    }).pipe(Effect.scoped)
  )

  it.live("a handler that interrupts itself is a failed attempt, not a release: it reaches the DLQ", () =>
    Effect.gen(function* () {
      const job = jobOn("self-interrupt", 3)
      let runs = 0
      yield* Worker.run({
        queue: "self-interrupt",
        handlers: [
          Worker.handler(job, () =>
            Effect.andThen(
              Effect.sync(() => runs++),
              Effect.interrupt
            )
          )
        ]
      })
      yield* Producer.enqueue(job, { n: 1 })
      const dead = yield* Effect.gen(function* () {
        const deadline = Date.now() + 10_000
        while (Date.now() < deadline) {
          const count = yield* DeadLetters.count("self-interrupt")
          if (count === 1) return count
          yield* Effect.sleep(20)
        }
        return 0
      })
      expect(dead).toBe(1)
      expect(runs).toBe(3)
      const [entry] = yield* DeadLetters.list("self-interrupt")
      expect(entry?.reason).toBe("exhausted")
      expect(entry?.attempts).toBe(3)
    }).pipe(Effect.scoped, Effect.provide(Producer.layer.pipe(Layer.provideMerge(MemoryBroker.layer()))))
  )

  it.live("a hostile attempt counter is refused at decode, not replayed through the backoff", () =>
    Effect.gen(function* () {
      const job = jobOn("hostile-attempts")
      let runs = 0
      yield* Worker.run({
        queue: "hostile-attempts",
        handlers: [Worker.handler(job, () => Effect.sync(() => runs++).pipe(Effect.andThen(Effect.fail("no"))))]
      })
      const broker = yield* Broker.Broker
      const envelope: Envelope.Envelope = {
        v: 1,
        id: "hostile",
        job: "work",
        payload: { n: 1 },
        attempts: 100_000_000,
        maxAttempts: 200_000_000,
        enqueuedAt: Date.now(),
        priority: 0
      }
      yield* broker.send("hostile-attempts", [
        { id: "hostile", body: Envelope.encode(envelope), delay: 0, priority: 0 }
      ])
      const deadline = Date.now() + 5000
      let count = 0
      while (Date.now() < deadline && count === 0) {
        count = yield* DeadLetters.count("hostile-attempts")
        yield* Effect.sleep(20)
      }
      expect(count).toBe(1)
      expect(runs).toBe(0)
      const [entry] = yield* DeadLetters.list("hostile-attempts")
      expect(entry?.reason).toBe("undecodable")
      expect(entry?.error).toContain("maxAttempts")
    }).pipe(Effect.scoped, Effect.provide(Producer.layer.pipe(Layer.provideMerge(MemoryBroker.layer()))))
  )

  it.live("a failure whose value cannot be printed still dead-letters with a text", () =>
    Effect.gen(function* () {
      const job = jobOn("unprintable", 1)
      yield* Worker.run({
        queue: "unprintable",
        handlers: [Worker.handler(job, () => Effect.fail(Object.create(null) as object))]
      })
      yield* Producer.enqueue(job, { n: 1 })
      const deadline = Date.now() + 5000
      let count = 0
      while (Date.now() < deadline && count === 0) {
        count = yield* DeadLetters.count("unprintable")
        yield* Effect.sleep(20)
      }
      expect(count).toBe(1)
      const [entry] = yield* DeadLetters.list("unprintable")
      expect(entry?.error.length).toBeGreaterThan(0)
    }).pipe(Effect.scoped, Effect.provide(Producer.layer.pipe(Layer.provideMerge(MemoryBroker.layer()))))
  )
})
