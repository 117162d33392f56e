/**
 * Hostile input, property-based: random bytes (as strings), random JSON, oversized and deeply
 * nested bodies, `__proto__` / `constructor.prototype` keys, unknown envelope versions, unknown
 * jobs and invalid payloads go straight onto the broker (`Broker.send`, bypassing the producer).
 * The worker never crashes, each lands in the DLQ with reason "undecodable", and a good job sent
 * after it is processed.
 */
import { describe, expect, it } from "@effect/vitest"
import { Broker, Producer, Worker } from "@errand/core"
import { Effect, Fiber, Layer, Logger, ManagedRuntime } from "effect"
import * as fc from "fast-check"
import { randomUUID } from "node:crypto"
import { chaosJob } from "../src/internal/harness.js"
import { selected, startBroker, type TestBroker } from "./brokers.js"

/** The worker's size cap in this test (the broker itself takes more): oversized bodies reach it. */
const cap = 64 * 1024

const envelope = (fields: Record<string, unknown> = {}) => ({
  v: 1,
  id: "hostile",
  job: "chaos",
  payload: { ms: 0, poison: false },
  attempts: 0,
  maxAttempts: 3,
  enqueuedAt: Date.now(),
  priority: 0,
  ...fields
})

const nestedArrays = (n: number) => "[".repeat(n) + "]".repeat(n)
const nestedObjects = (n: number) => '{"a":'.repeat(n) + "1" + "}".repeat(n)
const envelopeText = (fields: Record<string, unknown>) => JSON.stringify(envelope(fields))
/** Splice raw JSON text in place of the payload (for keys JSON.stringify would not write). */
const withRawPayload = (raw: string) => envelopeText({ payload: "@@P@@" }).replace('"@@P@@"', raw)

const hostileBody: fc.Arbitrary<{ kind: string; body: string }> = fc.oneof(
  fc.string({ unit: "binary", maxLength: 300 }).map((body) => ({ kind: "random text", body })),
  fc.uint8Array({ maxLength: 300 }).map((b) => ({ kind: "random bytes", body: Buffer.from(b).toString("latin1") })),
  fc.json({ maxDepth: 6 }).map((body) => ({ kind: "random JSON", body })),
  fc.integer({ min: 65, max: 20_000 }).map((n) => ({ kind: "deep arrays", body: nestedArrays(n) })),
  fc.integer({ min: 65, max: 5_000 }).map((n) => ({ kind: "deep objects", body: nestedObjects(n) })),
  fc.integer({ min: 65, max: 2_000 }).map((n) => ({ kind: "deep payload", body: withRawPayload(nestedObjects(n)) })),
  fc.integer({ min: cap + 1, max: cap + 40_000 }).map((n) => ({
    kind: "oversized",
    body: envelopeText({ payload: { ms: 0, poison: false, pad: "x".repeat(n) } })
  })),
  fc.constantFrom(
    { kind: "__proto__ in payload", body: withRawPayload('{"ms":0,"poison":false,"__proto__":{"polluted":true}}') },
    { kind: "__proto__ at root", body: envelopeText({}).replace('{"v":1', '{"__proto__":{"polluted":true},"v":1') },
    {
      kind: "constructor.prototype",
      body: withRawPayload('{"ms":0,"poison":false,"constructor":{"prototype":{"polluted":true}}}')
    }
  ),
  fc
    .oneof(
      fc.integer().filter((v) => v !== 1),
      fc.string(),
      fc.constant(null),
      fc.double(),
      fc.boolean()
    )
    .map((v) => ({ kind: "unknown version", body: envelopeText({ v }) })),
  fc
    .string({ maxLength: 40 })
    .filter((j) => j !== "chaos")
    .map((job) => ({ kind: "unknown job", body: envelopeText({ job }) })),
  fc.jsonValue({ maxDepth: 3 }).map((payload) => ({ kind: "invalid payload", body: envelopeText({ payload }) })),
  fc
    .constantFrom("id", "job", "attempts", "maxAttempts", "enqueuedAt", "priority")
    .map((field) => ({ kind: "invalid envelope", body: envelopeText({ [field]: { no: "way" } }) }))
)

/** SQS refuses characters outside XML 1.0's set: replace them so the body reaches the worker. */
const sqsSafe = (s: string) =>
  Array.from(s, (c) => {
    const code = c.codePointAt(0)!
    const allowed =
      code === 0x9 ||
      code === 0xa ||
      code === 0xd ||
      (code >= 0x20 && code <= 0xd7ff) ||
      (code >= 0xe000 && code <= 0xfffd) ||
      code >= 0x10000
    return allowed ? c : "\uFFFD"
  }).join("")

const runs: Record<string, number> = { memory: 300, bullmq: 100, rabbitmq: 60, sqs: 40 }

describe("hostile input on the wire", () => {
  for (const kind of selected) {
    it(`${kind}: every hostile body lands in the DLQ as undecodable, the worker keeps going`, async () => {
      const broker: TestBroker = await startBroker(kind)
      const queue = `chaos-hostile-${randomUUID().slice(0, 8)}`
      const job = chaosJob(queue, 3)
      const seen = new Set<string>()
      const layer = Producer.layer.pipe(
        Layer.provideMerge(Broker.withCapabilities(broker.layer(), { maxPayloadBytes: cap })),
        // every hostile body logs a dead-letter warning: expected, and too many to print
        Layer.provideMerge(Logger.layer([]))
      )
      const runtime = ManagedRuntime.make(layer)
      const worker = runtime.runFork(
        Effect.scoped(
          Effect.andThen(
            Worker.run({
              queue,
              handlers: [Worker.handler(job, (_, ctx) => Effect.sync(() => seen.add(ctx.id)))],
              concurrency: 4,
              pollWait: 200,
              lease: 5000
            }),
            Effect.never
          )
        )
      )
      const counts: Record<string, number> = {}
      let refused = 0
      let n = 0
      try {
        await fc.assert(
          fc.asyncProperty(hostileBody, async ({ kind: bodyKind, body: raw }) => {
            const body = kind === "sqs" ? sqsSafe(raw) : raw
            const id = `h${n}`
            const good = `g${n++}`
            const sent = await runtime.runPromiseExit(
              Effect.gen(function* () {
                const b = yield* Broker.Broker
                return yield* b.send(queue, [{ id, body, delay: 0, priority: 0 }])
              })
            )
            if (sent._tag === "Failure") {
              // the broker itself refused the bytes (a typed BrokerError, never a defect): fine
              expect(String(sent.cause)).toContain("BrokerError")
              refused++
            } else counts[bodyKind] = (counts[bodyKind] ?? 0) + 1
            await runtime.runPromise(Producer.enqueue(job, { ms: 0, poison: false }, { id: good }))
            const deadline = Date.now() + 30_000
            let letter: Broker.DeadLetterEntry | undefined
            while (Date.now() < deadline) {
              if (sent._tag === "Success" && letter === undefined) {
                const found = await runtime.runPromise(
                  Effect.gen(function* () {
                    const b = yield* Broker.Broker
                    return yield* b.deadLetters.get(queue, id)
                  })
                )
                if (found._tag === "Some") letter = found.value
              }
              if (seen.has(good) && (sent._tag === "Failure" || letter !== undefined)) break
              await new Promise((r) => setTimeout(r, 50))
            }
            expect(seen.has(good), `good job after a ${bodyKind} body was processed`).toBe(true)
            if (sent._tag === "Success") {
              expect(letter, `${bodyKind} body ${JSON.stringify(body.slice(0, 80))} is in the DLQ`).toBeDefined()
              expect(letter!.reason).toBe("undecodable")
              expect(letter!.error.length).toBeGreaterThan(0)
              expect(seen.has(id)).toBe(false)
            }
            expect(worker.pollUnsafe(), "worker still running").toBeUndefined()
            expect(({} as Record<string, unknown>).polluted).toBeUndefined()
          }),
          { numRuns: Number(process.env.CHAOS_HOSTILE_RUNS ?? runs[kind] ?? 25), endOnFailure: true }
        )
        console.log(`${kind}: hostile bodies that reached the worker`, counts, `refused by the broker: ${refused}`)
      } finally {
        await runtime.runPromise(Fiber.interrupt(worker))
        await runtime
          .runPromise(
            Effect.gen(function* () {
              const b = yield* Broker.Broker
              yield* Effect.ignore(b.deleteQueue(queue))
            })
          )
          .catch(() => undefined)
        await runtime.dispose()
        await broker.stop()
      }
    })
  }
})
