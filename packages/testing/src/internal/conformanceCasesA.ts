/**
 * Conformance cases 01–10: delivery, bulk, concurrency, retries, dead letters, delays.
 */
import { expect } from "@effect/vitest"
import { Broker, DeadLetters, Envelope, Job, Producer, Worker } from "@errand/core"
import { Effect, Option, Schedule, Schema } from "effect"
import {
  type Case,
  IntendedFailure,
  type Kit,
  newQueue,
  now,
  quietPeriod,
  randomSuffix,
  range,
  Recorder,
  startWorker,
  tolerance,
  waitFor,
  waitForStats
} from "./conformanceKit.js"

const RoundTripPayload = Schema.Struct({
  text: Schema.String,
  count: Schema.Number,
  flag: Schema.Boolean,
  nothing: Schema.NullOr(Schema.String),
  list: Schema.Array(Schema.Number),
  nested: Schema.Struct({
    deeper: Schema.Struct({
      symbols: Schema.String,
      tags: Schema.Array(Schema.String)
    })
  })
})

const roundTripPayload: typeof RoundTripPayload.Type = {
  text: "héllo wörld — 日本語 — Ελληνικά — עברית — Ünïcödé",
  count: -12.5,
  flag: true,
  nothing: null,
  list: [0, 1, 2e10, -3, 0.1],
  nested: {
    deeper: {
      symbols: '🎉 👩‍👩‍👧‍👦 "quoted" \\ back\\slash\nnew line\ttab \u0000 nul \u2028 sep',
      tags: ["a", "", "z"]
    }
  }
}

const N = Schema.Struct({ n: Schema.Number })

const r01: Case = {
  id: "01",
  title: "round trip: payload, job name and metadata arrive intact, no duplicates",
  userStore: true,
  run: (kit) =>
    Effect.gen(function* () {
      const queue = yield* newQueue(kit)
      const job = Job.make("conformance.round-trip", { queue, payload: RoundTripPayload, attempts: 4 })
      const runs = new Recorder<typeof RoundTripPayload.Type>()
      const key = `round-trip-${randomSuffix()}`
      const explicitId = `explicit-${randomSuffix()}`
      const before = yield* now
      const full = yield* Producer.enqueue(job, roundTripPayload, {
        priority: 3,
        group: "group-a",
        idempotencyKey: key,
        attempts: 3
      })
      const plain = yield* Producer.enqueue(job, { ...roundTripPayload, count: 2 })
      const explicit = yield* Producer.enqueue(job, { ...roundTripPayload, count: 3 }, { id: explicitId })
      const after = yield* now
      expect(full.duplicate).toBe(false)
      expect(plain.duplicate).toBe(false)
      expect(explicit).toEqual({ id: explicitId, duplicate: false })
      expect(new Set([full.id, plain.id, explicit.id]).size).toBe(3)

      yield* startWorker(
        queue,
        [
          Worker.handler(
            job,
            runs.handle(() => Effect.void)
          )
        ],
        { concurrency: 3 }
      )
      yield* waitFor(
        kit,
        "3 jobs to run",
        () => runs.count >= 3,
        15_000,
        () => runs.summary()
      )
      yield* quietPeriod(kit, 500)
      expect(runs.count, "each job runs once without faults").toBe(3)

      const [fullRun] = runs.of(full.id)
      const [plainRun] = runs.of(plain.id)
      const [explicitRun] = runs.of(explicit.id)
      expect(fullRun, "job enqueued with every option").toBeDefined()
      expect(plainRun, "job enqueued with defaults").toBeDefined()
      expect(explicitRun, "job enqueued with an explicit id").toBeDefined()

      expect(fullRun!.payload).toEqual(roundTripPayload)
      expect(fullRun!.context).toEqual({
        id: full.id,
        job: "conformance.round-trip",
        queue,
        attempt: 1,
        maxAttempts: 3,
        enqueuedAt: fullRun!.context.enqueuedAt,
        priority: 3,
        idempotencyKey: key,
        group: "group-a"
      })
      expect(plainRun!.payload).toEqual({ ...roundTripPayload, count: 2 })
      expect(plainRun!.context).toEqual({
        id: plain.id,
        job: "conformance.round-trip",
        queue,
        attempt: 1,
        maxAttempts: 4,
        enqueuedAt: plainRun!.context.enqueuedAt,
        priority: 0,
        idempotencyKey: undefined,
        group: undefined
      })
      expect(explicitRun!.payload).toEqual({ ...roundTripPayload, count: 3 })
      expect(explicitRun!.context.id).toBe(explicitId)
      for (const run of runs.runs) {
        expect(run.context.enqueuedAt).toBeGreaterThanOrEqual(before)
        expect(run.context.enqueuedAt).toBeLessThanOrEqual(after)
      }
    })
}

const r02: Case = {
  id: "02",
  title: "bulk: 1,000 jobs (batch and concurrent enqueue), each processed exactly once",
  timeout: 120_000,
  run: (kit) =>
    Effect.gen(function* () {
      const queue = yield* newQueue(kit)
      const job = Job.make("conformance.bulk", { queue, payload: N })
      const runs = new Recorder<{ readonly n: number }>()
      yield* startWorker(
        queue,
        [
          Worker.handler(
            job,
            runs.handle(() => Effect.void)
          )
        ],
        { concurrency: 50 }
      )
      const batch = yield* Producer.enqueueBatch(
        job,
        range(0, 900).map((n) => ({ payload: { n } }))
      )
      const singles = yield* Effect.forEach(range(900, 1000), (n) => Producer.enqueue(job, { n }), { concurrency: 20 })
      const ids = [...batch, ...singles].map((r) => r.id)
      expect(new Set(ids).size).toBe(1000)
      expect([...batch, ...singles].every((r) => !r.duplicate)).toBe(true)

      yield* waitFor(
        kit,
        "1,000 distinct jobs to run",
        () => runs.countsById().size >= 1000,
        90_000,
        () => `${runs.countsById().size} distinct of ${runs.count} runs`
      )
      yield* quietPeriod(kit, 500)
      const counts = runs.countsById()
      const repeated = [...counts].filter(([, c]) => c !== 1)
      expect(repeated, "jobs that ran more than once").toEqual([])
      expect(runs.count).toBe(1000)
      expect(new Set(counts.keys())).toEqual(new Set(ids))
      expect(new Set(runs.runs.map((r) => r.payload.n))).toEqual(new Set(range(0, 1000)))
    })
}

const r03: Case = {
  id: "03",
  title: "concurrency: in-flight handlers reach N and never exceed N",
  run: (kit) =>
    Effect.gen(function* () {
      const queue = yield* newQueue(kit)
      const job = Job.make("conformance.concurrency", { queue, payload: N })
      const limit = 5
      const runs = new Recorder<{ readonly n: number }>()
      yield* Producer.enqueueBatch(
        job,
        range(0, 25).map((n) => ({ payload: { n } }))
      )
      const worker = yield* startWorker(
        queue,
        [
          Worker.handler(
            job,
            runs.handle(() => Effect.sleep(150 + Math.floor(Math.random() * 50)))
          )
        ],
        { concurrency: limit }
      )
      // the handlers' own count is exact; the worker's gauge is sampled as well while the jobs run
      let workerMax = 0
      yield* waitFor(
        kit,
        "25 jobs to finish",
        Effect.map(worker.inFlight, (n) => {
          if (n > workerMax) workerMax = n
          return runs.succeeded().length >= 25
        }),
        30_000,
        () => runs.summary()
      )
      expect(workerMax, "Worker.inFlight").toBeLessThanOrEqual(limit)
      expect(runs.maxInFlight, "most handlers seen running at once").toBe(limit)
      expect(runs.count).toBe(25)
    })
}

const r04: Case = {
  id: "04",
  title: "retries: attempts numbered 1..k, gaps respect the backoff policy",
  run: (kit) =>
    Effect.gen(function* () {
      const queue = yield* newQueue(kit)
      const base = 200
      const job = Job.make("conformance.retries", {
        queue,
        payload: N,
        attempts: 6,
        backoff: Schedule.exponential(`${base} millis`)
      })
      const k = 4
      const runs = new Recorder<{ readonly n: number }>()
      yield* startWorker(queue, [
        Worker.handler(
          job,
          runs.handle((_, ctx) =>
            ctx.attempt < k ? Effect.fail(new IntendedFailure(`fails on attempt ${ctx.attempt}`)) : Effect.void
          )
        )
      ])
      const { id } = yield* Producer.enqueue(job, { n: 1 })
      yield* waitFor(
        kit,
        `attempt ${k} to succeed`,
        () => runs.succeeded().length >= 1,
        20_000,
        () => runs.summary()
      )
      yield* quietPeriod(kit, 500)
      expect(runs.runs.map((r) => r.context.attempt)).toEqual([1, 2, 3, 4])
      expect(runs.runs.every((r) => r.context.id === id && r.context.maxAttempts === 6)).toBe(true)
      expect(runs.runs.map((r) => r.outcome)).toEqual(["failed", "failed", "failed", "succeeded"])
      const expected = [base, base * 2, base * 4]
      for (let i = 0; i < expected.length; i++) {
        const gap = runs.runs[i + 1]!.startedAt - runs.runs[i]!.endedAt!
        expect(gap, `gap after attempt ${i + 1} (policy ${expected[i]} ms)`).toBeGreaterThanOrEqual(
          expected[i]! - tolerance
        )
        expect(gap, `gap after attempt ${i + 1} (policy ${expected[i]} ms)`).toBeLessThanOrEqual(
          expected[i]! + kit.scaled(5000)
        )
      }
    })
}

const r05: Case = {
  id: "05",
  title: "attempts exhausted → DLQ with payload, last error and attempt count; never run again",
  run: (kit) =>
    Effect.gen(function* () {
      const queue = yield* newQueue(kit)
      const Payload = Schema.Struct({ order: Schema.String, amount: Schema.Number })
      const job = Job.make("conformance.exhausted", {
        queue,
        payload: Payload,
        attempts: 3,
        backoff: Schedule.spaced("100 millis")
      })
      const runs = new Recorder<typeof Payload.Type>()
      yield* startWorker(queue, [
        Worker.handler(
          job,
          runs.handle((_, ctx) => Effect.fail(new IntendedFailure(`boom on attempt ${ctx.attempt}`)))
        )
      ])
      const start = yield* now
      const { id } = yield* Producer.enqueue(job, { order: "A-17", amount: 42.5 })
      yield* waitFor(
        kit,
        "the job to be dead-lettered",
        Effect.map(DeadLetters.count(queue), (n) => n >= 1),
        20_000,
        () => runs.summary()
      )
      const end = yield* now
      expect(runs.runs.map((r) => r.context.attempt)).toEqual([1, 2, 3])

      const entries = yield* DeadLetters.list(queue)
      expect(entries).toHaveLength(1)
      const entry = entries[0]!
      expect(entry.id).toBe(id)
      expect(entry.reason).toBe("exhausted")
      expect(entry.attempts).toBe(3)
      expect(entry.error).toContain("boom on attempt 3")
      expect(entry.failedAt).toBeGreaterThanOrEqual(start - tolerance)
      expect(entry.failedAt).toBeLessThanOrEqual(end + tolerance)
      expect(entry.envelope?.id).toBe(id)
      expect(entry.envelope?.job).toBe("conformance.exhausted")
      expect(entry.envelope?.payload).toEqual({ order: "A-17", amount: 42.5 })
      expect(entry.envelope?.maxAttempts).toBe(3)
      const got = yield* DeadLetters.get(queue, id)
      expect(Option.isSome(got)).toBe(true)
      expect(Option.getOrUndefined(got)?.reason).toBe("exhausted")

      yield* quietPeriod(kit, 1000)
      expect(runs.count, "a dead-lettered job never runs again").toBe(3)
      expect(yield* DeadLetters.count(queue)).toBe(1)
      yield* waitForStats(kit, queue, { waiting: 0, active: 0, delayed: 0, dead: 1 })
    })
}

const r06: Case = {
  id: "06",
  title: "Unrecoverable → DLQ after one attempt; RetryAfter honoured",
  run: (kit) =>
    Effect.gen(function* () {
      const queue = yield* newQueue(kit)
      const unrecoverable = Job.make("conformance.unrecoverable", { queue, payload: N, attempts: 5 })
      const retryAfter = Job.make("conformance.retry-after", {
        queue,
        payload: N,
        attempts: 5,
        backoff: Schedule.spaced("10 millis")
      })
      const retryDelay = 1500
      const deadRuns = new Recorder<{ readonly n: number }>()
      const laterRuns = new Recorder<{ readonly n: number }>()
      yield* startWorker(queue, [
        Worker.handler(
          unrecoverable,
          deadRuns.handle(() => Effect.fail(new Worker.Unrecoverable({ message: "card declined" })))
        ),
        Worker.handler(
          retryAfter,
          laterRuns.handle((_, ctx) =>
            ctx.attempt === 1
              ? Effect.fail(Worker.RetryAfter.of(`${retryDelay} millis`, "rate limited upstream"))
              : Effect.void
          )
        )
      ])
      const dead = yield* Producer.enqueue(unrecoverable, { n: 1 })
      const later = yield* Producer.enqueue(retryAfter, { n: 2 })
      yield* waitFor(
        kit,
        "the unrecoverable job to be dead-lettered",
        Effect.map(DeadLetters.count(queue), (n) => n >= 1),
        15_000
      )
      yield* waitFor(
        kit,
        "the RetryAfter job to succeed",
        () => laterRuns.succeeded().length >= 1,
        retryDelay + 15_000,
        () => laterRuns.summary()
      )
      yield* quietPeriod(kit, 500)

      expect(deadRuns.count, "Unrecoverable runs once").toBe(1)
      const entry = Option.getOrUndefined(yield* DeadLetters.get(queue, dead.id))
      expect(entry?.reason).toBe("unrecoverable")
      expect(entry?.attempts).toBe(1)
      expect(entry?.error).toContain("card declined")

      expect(laterRuns.runs.map((r) => r.context.attempt)).toEqual([1, 2])
      expect(laterRuns.runs.every((r) => r.context.id === later.id)).toBe(true)
      const gap = laterRuns.runs[1]!.startedAt - laterRuns.runs[0]!.endedAt!
      expect(gap, "second attempt not before the RetryAfter delay").toBeGreaterThanOrEqual(retryDelay - tolerance)
      expect(gap).toBeLessThanOrEqual(retryDelay + kit.scaled(5000))
      expect(yield* DeadLetters.count(queue)).toBe(1)
    })
}

const r07: Case = {
  id: "07",
  title: "undecodable message on the wire → DLQ at once with reason, worker keeps running",
  run: (kit) =>
    Effect.gen(function* () {
      const broker = yield* Broker.Broker
      const queue = yield* newQueue(kit)
      const known = Job.make("conformance.known", { queue, payload: N, attempts: 5 })
      const runs = new Recorder<{ readonly n: number }>()
      yield* startWorker(
        queue,
        [
          Worker.handler(
            known,
            runs.handle(() => Effect.void)
          )
        ],
        { concurrency: 2 }
      )
      const prefix = `raw-${randomSuffix()}`
      const enqueuedAt = yield* now
      const envelope = (id: string, job: string, payload: unknown): Envelope.Envelope => ({
        v: 1,
        id,
        job,
        payload,
        attempts: 0,
        maxAttempts: 5,
        enqueuedAt,
        priority: 0
      })
      const bad = [
        { id: `${prefix}-not-json`, body: "not json", expect: "NotJson" },
        {
          id: `${prefix}-version`,
          body: JSON.stringify({ ...envelope(`${prefix}-version`, known.name, { n: 1 }), v: 99 }),
          expect: "UnknownVersion"
        },
        {
          id: `${prefix}-job`,
          body: Envelope.encode(envelope(`${prefix}-job`, "conformance.no-such-job", { n: 1 })),
          expect: "UnknownJob"
        },
        {
          id: `${prefix}-payload`,
          body: Envelope.encode(envelope(`${prefix}-payload`, known.name, { n: "not a number" })),
          expect: "InvalidPayload"
        }
      ]
      for (const message of bad) {
        yield* broker.send(queue, [{ id: message.id, body: message.body, delay: 0, priority: 0 }])
      }
      const good = yield* Producer.enqueue(known, { n: 7 })
      yield* waitFor(kit, "the good job after the bad ones to run", () => runs.succeeded().length >= 1, 15_000)
      yield* waitFor(
        kit,
        "4 undecodable messages in the DLQ",
        Effect.map(DeadLetters.count(queue), (n) => n >= 4),
        15_000
      )
      yield* quietPeriod(kit, 500)

      expect(runs.runs.map((r) => [r.context.id, r.payload])).toEqual([[good.id, { n: 7 }]])
      const entries = yield* DeadLetters.list(queue)
      expect(entries, "each undecodable message dead-lettered once").toHaveLength(4)
      for (const message of bad) {
        const entry = entries.find((e) => e.body === message.body)
        expect(entry, `DLQ entry for ${message.expect}`).toBeDefined()
        expect(entry!.reason).toBe("undecodable")
        expect(entry!.error).toContain(message.expect)
        expect(entry!.attempts).toBe(0)
      }
      yield* waitForStats(kit, queue, { waiting: 0, active: 0, delayed: 0, dead: 4 })
    })
}

const r08: Case = {
  id: "08",
  title: "DLQ: list / count / get / redrive (by id and all, attempts reset) / purge (by id and all)",
  run: (kit) =>
    Effect.gen(function* () {
      const queue = yield* newQueue(kit)
      const Label = Schema.Struct({ label: Schema.String })
      const job = Job.make("conformance.dlq", {
        queue,
        payload: Label,
        attempts: 2,
        backoff: Schedule.spaced("50 millis")
      })
      let failing = true
      const runs = new Recorder<typeof Label.Type>()
      yield* startWorker(
        queue,
        [
          Worker.handler(
            job,
            runs.handle((p) => (failing ? Effect.fail(new IntendedFailure(`failing ${p.label}`)) : Effect.void))
          )
        ],
        { concurrency: 4 }
      )
      const enqueue = (label: string) => Effect.map(Producer.enqueue(job, { label }), (r) => r.id)
      const countIs = (n: number) =>
        waitFor(
          kit,
          `DLQ count to be ${n}`,
          Effect.map(DeadLetters.count(queue), (c) => c === n),
          20_000
        )
      const succeededWithFirstAttempt = (id: string) =>
        runs.succeeded().some((r) => r.context.id === id && r.context.attempt === 1)

      // dead-letter four jobs
      const [a, b, c, d] = [yield* enqueue("a"), yield* enqueue("b"), yield* enqueue("c"), yield* enqueue("d")]
      yield* countIs(4)
      const all = yield* DeadLetters.list(queue)
      expect(new Set(all.map((e) => e.id))).toEqual(new Set([a, b, c, d]))
      for (let i = 1; i < all.length; i++) {
        expect(all[i]!.failedAt, "entries oldest first").toBeGreaterThanOrEqual(all[i - 1]!.failedAt)
      }
      expect(all.every((e) => e.reason === "exhausted" && e.attempts === 2)).toBe(true)
      const page1 = yield* DeadLetters.list(queue, { limit: 2 })
      const page2 = yield* DeadLetters.list(queue, { offset: 2, limit: 2 })
      const page3 = yield* DeadLetters.list(queue, { offset: 4, limit: 2 })
      expect([...page1, ...page2].map((e) => e.id)).toEqual(all.map((e) => e.id))
      expect(page3).toEqual([])
      const gotA = Option.getOrUndefined(yield* DeadLetters.get(queue, a!))
      expect(gotA?.id).toBe(a)
      expect(gotA?.envelope?.payload).toEqual({ label: "a" })
      expect(Option.isNone(yield* DeadLetters.get(queue, `missing-${randomSuffix()}`))).toBe(true)

      // redrive one by id: it runs again from attempt 1
      failing = false
      expect(yield* DeadLetters.redrive(queue, { ids: [a!] })).toBe(1)
      yield* waitFor(
        kit,
        "the redriven job to run again with attempt 1",
        () => succeededWithFirstAttempt(a!),
        15_000,
        () => runs.summary()
      )
      yield* countIs(3)
      expect(Option.isNone(yield* DeadLetters.get(queue, a!))).toBe(true)
      expect(yield* DeadLetters.redrive(queue, { ids: [`missing-${randomSuffix()}`] })).toBe(0)

      // redrive the rest
      expect(yield* DeadLetters.redrive(queue)).toBe(3)
      yield* waitFor(
        kit,
        "every redriven job to run again with attempt 1",
        () => [b, c, d].every((id) => succeededWithFirstAttempt(id!)),
        15_000,
        () => runs.summary()
      )
      yield* countIs(0)

      // purge by id, then all
      failing = true
      const [e, f, g] = [yield* enqueue("e"), yield* enqueue("f"), yield* enqueue("g")]
      yield* countIs(3)
      expect(yield* DeadLetters.purge(queue, { ids: [e!] })).toBe(1)
      expect(Option.isNone(yield* DeadLetters.get(queue, e!))).toBe(true)
      yield* countIs(2)
      expect(yield* DeadLetters.purge(queue, { ids: [`missing-${randomSuffix()}`] })).toBe(0)
      expect(yield* DeadLetters.purge(queue)).toBe(2)
      yield* countIs(0)
      expect(yield* DeadLetters.list(queue)).toEqual([])
      yield* quietPeriod(kit, 500)
      for (const id of [e, f, g]) expect(runs.of(id!).length, "purged jobs never run again").toBe(2)
      expect(yield* DeadLetters.count(queue)).toBe(0)
      yield* waitForStats(kit, queue, { waiting: 0, active: 0, delayed: 0, dead: 0 })
    })
}

/** Shared body of the delay cases: a delayed job runs not before its delay, and promptly after. */
const delayedJob = (kit: Kit, delay: number) =>
  Effect.gen(function* () {
    const queue = yield* newQueue(kit)
    const job = Job.make("conformance.delayed", { queue, payload: N })
    const runs = new Recorder<{ readonly n: number }>()
    yield* startWorker(queue, [
      Worker.handler(
        job,
        runs.handle(() => Effect.void)
      )
    ])
    const before = yield* now
    const delayed = yield* Producer.enqueue(job, { n: 1 }, { delay: `${delay} millis` })
    const after = yield* now
    const immediate = yield* Producer.enqueue(job, { n: 2 })
    yield* waitFor(
      kit,
      "the delayed job to run",
      () => runs.of(delayed.id).length >= 1,
      delay + 15_000,
      () => runs.summary()
    )
    yield* waitFor(
      kit,
      "the immediate job to run",
      () => runs.of(immediate.id).length >= 1,
      15_000,
      () => runs.summary()
    )
    yield* quietPeriod(kit, 300)
    const run = runs.of(delayed.id)
    expect(run).toHaveLength(1)
    expect(run[0]!.context.attempt).toBe(1)
    expect(run[0]!.startedAt - before, "not before the delay").toBeGreaterThanOrEqual(delay - tolerance)
    expect(run[0]!.startedAt - after, "promptly after the delay").toBeLessThanOrEqual(delay + kit.scaled(3000))
    expect(runs.of(immediate.id)).toHaveLength(1)
    if (kit.capabilities.ordering !== "fifo") {
      expect(runs.of(immediate.id)[0]!.startedAt, "a delayed job does not hold back the queue").toBeLessThan(
        run[0]!.startedAt
      )
    }
  })

const r09: Case = {
  id: "09",
  title: "delayed job: not before the delay, promptly after",
  run: (kit) => delayedJob(kit, 1500)
}

const hopMaxDelay = 500

const r10: Case = {
  id: "10",
  title: `delay beyond maxDelay (configured ${hopMaxDelay} ms) still honoured`,
  layer: (options) =>
    options.capabilities.maxDelay === 0 || options.capabilities.maxDelay <= hopMaxDelay
      ? options.layer
      : Broker.withCapabilities(options.layer, { maxDelay: hopMaxDelay }),
  run: (kit) =>
    Effect.gen(function* () {
      const broker = yield* Broker.Broker
      expect(broker.capabilities.maxDelay).toBeLessThanOrEqual(hopMaxDelay)
      yield* delayedJob(kit, 1500)
    })
}

/** Cases 01–10. */
export const casesA: ReadonlyArray<Case> = [r01, r02, r03, r04, r05, r06, r07, r08, r09, r10]
