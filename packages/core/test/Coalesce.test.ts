import { describe, expect, it } from "@effect/vitest"
import { Deferred, Effect, Exit, Fiber, Layer, Schema, Scope } from "effect"
import { Broker, type OutgoingMessage } from "../src/Broker.js"
import { BrokerError } from "../src/Errors.js"
import * as Job from "../src/Job.js"
import * as Producer from "../src/Producer.js"
import { recordingBroker } from "./recordingBroker.js"

const Payload = Schema.Struct({ n: Schema.Number })
const jobOn = (queue: string) => Job.make("count", { queue, payload: Payload })

/**
 * A broker whose sends each wait for the test to let them go (or, with `auto`, for the next
 * event-loop turn), so sends overlap as they do on a real broker. It records every call.
 */
const gatedBroker = (options: { readonly auto: boolean; readonly failQueue?: string }) => {
  const base = recordingBroker()
  const calls: Array<{ queue: string; messages: ReadonlyArray<OutgoingMessage> }> = []
  const gates: Array<Deferred.Deferred<void>> = []
  let inFlight = 0
  let maxInFlight = 0
  const layer = Layer.effect(
    Broker,
    Effect.map(Broker.use(Effect.succeed), (broker) =>
      Broker.of({
        ...broker,
        send: (queue, messages) =>
          Effect.gen(function* () {
            calls.push({ queue, messages })
            inFlight++
            maxInFlight = Math.max(maxInFlight, inFlight)
            try {
              if (options.auto) {
                yield* Effect.callback<void>((resume) => {
                  setImmediate(() => resume(Effect.void))
                })
              } else {
                const gate = yield* Deferred.make<void>()
                gates.push(gate)
                yield* Deferred.await(gate)
              }
            } finally {
              inFlight--
            }
            if (queue === options.failQueue) {
              return yield* new BrokerError({ reason: "Connection", operation: "send", message: "refused" })
            }
            return yield* broker.send(queue, messages)
          })
      })
    )
  ).pipe(Layer.provide(base.layer))
  return { calls, gates, sent: base.sent, layer, maxInFlight: () => maxInFlight }
}

describe("concurrent single enqueues are coalesced into batch sends", () => {
  it.effect("1,000 at once: few sends, at most 8 batches in flight, each caller gets its own job's answer", () => {
    const broker = gatedBroker({ auto: true })
    const job = jobOn("burst")
    return Effect.gen(function* () {
      const results = yield* Effect.forEach(
        Array.from({ length: 1000 }, (_, n) => n),
        (n) => Producer.enqueue(job, { n }, { id: `job-${n}` }),
        { concurrency: "unbounded" }
      )
      results.forEach((result, n) => expect(result).toEqual({ id: `job-${n}`, duplicate: false }))
      expect(broker.sent).toHaveLength(1000)
      expect(new Set(broker.sent.map((s) => s.message.id)).size).toBe(1000)
      expect(broker.calls.length).toBeLessThan(50)
      expect(broker.calls.length).toBeGreaterThan(1)
      // 8 batch sends, plus the lone send that started the burst
      expect(broker.maxInFlight()).toBeLessThanOrEqual(9)
      for (const call of broker.calls) expect(call.messages.length).toBeLessThanOrEqual(500)
    }).pipe(Effect.provide(Producer.layer.pipe(Layer.provide(broker.layer))))
  })

  it.effect("a lone enqueue goes straight to the broker in a send of its own", () => {
    const broker = gatedBroker({ auto: true })
    const job = jobOn("lone")
    return Effect.gen(function* () {
      for (let n = 0; n < 3; n++) yield* Producer.enqueue(job, { n })
      expect(broker.calls.map((c) => c.messages.length)).toEqual([1, 1, 1])
    }).pipe(Effect.provide(Producer.layer.pipe(Layer.provide(broker.layer))))
  })

  it.effect("one batch holds several queues: one send per queue, and a failed send fails only its callers", () => {
    const broker = gatedBroker({ auto: true, failQueue: "refused" })
    return Effect.gen(function* () {
      // the first enqueue holds the direct path busy, so the others wait and leave together
      const exits = yield* Effect.forEach(
        ["ok-a", "ok-a", "refused", "ok-b", "refused", "ok-b", "ok-a"],
        (queue, n) => Effect.exit(Producer.enqueue(jobOn(queue), { n }, { id: `${queue}-${n}` })),
        { concurrency: "unbounded" }
      )
      exits.forEach((exit, n) => {
        const queue = ["ok-a", "ok-a", "refused", "ok-b", "refused", "ok-b", "ok-a"][n]!
        if (queue === "refused") {
          expect(Exit.isFailure(exit)).toBe(true)
          if (Exit.isFailure(exit)) expect(String(exit.cause)).toContain("refused")
        } else {
          expect(exit).toEqual(Exit.succeed({ id: `${queue}-${n}`, duplicate: false }))
        }
      })
      expect(broker.sent.map((s) => s.message.id).sort()).toEqual(
        ["ok-a-0", "ok-a-1", "ok-b-3", "ok-b-5", "ok-a-6"].sort()
      )
      for (const call of broker.calls) {
        for (const message of call.messages) expect(message.id.startsWith(`${call.queue}-`)).toBe(true)
      }
    }).pipe(Effect.provide(Producer.layer.pipe(Layer.provide(broker.layer))))
  })

  it.effect("a caller interrupted before its batch leaves withdraws its job; the others are sent", () => {
    const broker = gatedBroker({ auto: false })
    const job = jobOn("withdraw")
    return Effect.gen(function* () {
      const first = yield* Effect.forkChild(Producer.enqueue(job, { n: 0 }, { id: "first" }))
      yield* Effect.yieldNow
      expect(broker.calls).toHaveLength(1) // the direct send, held at its gate
      const second = yield* Effect.forkChild(Producer.enqueue(job, { n: 1 }, { id: "second" }))
      const third = yield* Effect.forkChild(Producer.enqueue(job, { n: 2 }, { id: "third" }))
      yield* Effect.yieldNow
      yield* Fiber.interrupt(second)
      // let every send through as it arrives
      while (broker.gates.length > 0 || broker.calls.length < 2) {
        const gate = broker.gates.shift()
        if (gate) yield* Deferred.succeed(gate, undefined)
        yield* Effect.yieldNow
      }
      expect(yield* Fiber.join(first)).toEqual({ id: "first", duplicate: false })
      expect(yield* Fiber.join(third)).toEqual({ id: "third", duplicate: false })
      expect(broker.sent.map((s) => s.message.id)).toEqual(["first", "third"])
    }).pipe(Effect.provide(Producer.layer.pipe(Layer.provide(broker.layer))))
  })

  it.effect("closing the producer interrupts callers still waiting; none is left hanging", () => {
    const broker = gatedBroker({ auto: false })
    const job = jobOn("closing")
    return Effect.gen(function* () {
      const scope = yield* Scope.make()
      const producer = yield* Producer.make(yield* Broker.use(Effect.succeed), undefined).pipe(Scope.provide(scope))
      // callers in rounds, each round its own batch: 8 batches fill the send slots, the rest wait
      const fibers: Array<Fiber.Fiber<Producer.EnqueueResult, unknown>> = []
      for (let round = 0; round < 12; round++) {
        for (let k = 0; k < 10; k++) fibers.push(yield* Effect.forkChild(producer.enqueue(job, { n: round * 10 + k })))
        for (let turn = 0; turn < 3; turn++) yield* Effect.yieldNow
      }
      // the lone send and batches are held at their gates, and more callers wait behind them
      expect(broker.calls.length).toBeGreaterThan(1)
      expect(broker.calls.reduce((n, call) => n + call.messages.length, 0)).toBeLessThan(120)
      yield* Scope.close(scope, Exit.void)
      // the lone send that started the burst runs in its caller's fiber: the broker answers it
      yield* Deferred.succeed(broker.gates[0]!, undefined)
      expect(yield* Fiber.join(fibers[0]!)).toMatchObject({ duplicate: false })
      for (const fiber of fibers.slice(1)) {
        const exit = yield* Fiber.await(fiber)
        expect(Exit.hasInterrupts(exit)).toBe(true)
      }
      // a producer whose scope is closed refuses further enqueues instead of queueing them forever
      const late = yield* Effect.exit(producer.enqueue(job, { n: 99 }))
      expect(Exit.hasInterrupts(late)).toBe(true)
    }).pipe(Effect.provide(broker.layer))
  })
})
