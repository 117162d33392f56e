/**
 * Conformance cases 11–21: ordering, rate limit, shutdown, leases, idempotency, scheduler,
 * stats, payload limits, capabilities, broker restart, bad input.
 */
import { expect } from "@effect/vitest"
import { Broker, DeadLetters, Envelope, Idempotency, Job, Producer, Queues, Scheduler, Worker } from "@errand/core"
import { Deferred, Effect, Exit, Schema, Scope } from "effect"
import {
  type Case,
  countingBroker,
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
  waitForDrained,
  waitForStats
} from "./conformanceKit.js"

const N = Schema.Struct({ n: Schema.Number })
const Labelled = Schema.Struct({ label: Schema.String })

const r11a: Case = {
  id: "11a",
  title: "priority order: higher priority first",
  skip: (o) =>
    o.capabilities.priorities ? undefined : "the broker has no priorities (capabilities.priorities is false)",
  run: (kit) =>
    Effect.gen(function* () {
      const queue = yield* newQueue(kit)
      const job = Job.make("conformance.priority", { queue, payload: Labelled })
      const runs = new Recorder<typeof Labelled.Type>()
      for (const i of range(0, 5)) yield* Producer.enqueue(job, { label: `low-${i}` }, { priority: 1 })
      for (const i of range(0, 5)) yield* Producer.enqueue(job, { label: `high-${i}` }, { priority: 8 })
      yield* waitForStats(kit, queue, { waiting: 10, active: 0, delayed: 0, dead: 0 })
      yield* startWorker(
        queue,
        [
          Worker.handler(
            job,
            runs.handle(() => Effect.sleep(10))
          )
        ],
        { concurrency: 1 }
      )
      yield* waitFor(
        kit,
        "10 jobs to run",
        () => runs.succeeded().length >= 10,
        20_000,
        () => runs.summary()
      )
      const order = runs.runs.map((r) => r.payload.label)
      expect(
        order.slice(0, 5).every((l) => l.startsWith("high-")),
        `start order ${order.join(", ")}`
      ).toBe(true)
      expect(
        order.slice(5).every((l) => l.startsWith("low-")),
        `start order ${order.join(", ")}`
      ).toBe(true)
      expect(runs.runs.find((r) => r.payload.label === "high-0")?.context.priority).toBe(8)
    })
}

const r11b: Case = {
  id: "11b",
  title: "per-group order: each group in enqueue order, one at a time",
  skip: (o) =>
    o.capabilities.ordering === "none" ? 'the broker has no ordering (capabilities.ordering is "none")' : undefined,
  run: (kit) =>
    Effect.gen(function* () {
      const queue = yield* newQueue(kit)
      const Item = Schema.Struct({ group: Schema.String, n: Schema.Number })
      const job = Job.make("conformance.ordering", { queue, payload: Item })
      const runs = new Recorder<typeof Item.Type>()
      const fifo = kit.capabilities.ordering === "fifo"
      const perGroup = 6
      const groups = ["group-a", "group-b"]
      for (const n of range(0, perGroup)) {
        for (const group of groups) yield* Producer.enqueue(job, { group, n }, { group })
      }
      const running = new Map<string, number>()
      let overlap = 0
      const completed: Array<typeof Item.Type> = []
      yield* startWorker(
        queue,
        [
          Worker.handler(
            job,
            runs.handle((p) =>
              Effect.gen(function* () {
                const inGroup = (running.get(p.group) ?? 0) + 1
                running.set(p.group, inGroup)
                if (inGroup > 1) overlap++
                yield* Effect.sleep(60)
                running.set(p.group, (running.get(p.group) ?? 1) - 1)
                completed.push(p)
              })
            )
          )
          // "fifo" promises queue order, not one at a time: check it at concurrency 1
        ],
        { concurrency: fifo ? 1 : 4 }
      )
      yield* waitFor(
        kit,
        "every job to run",
        () => completed.length >= perGroup * groups.length,
        30_000,
        () => runs.summary()
      )
      yield* quietPeriod(kit, 300)
      expect(runs.count, "each job runs once").toBe(perGroup * groups.length)
      for (const group of groups) {
        expect(
          completed.filter((p) => p.group === group).map((p) => p.n),
          `completion order of ${group}`
        ).toEqual(range(0, perGroup))
      }
      expect(overlap, "two jobs of one group running at once").toBe(0)
      if (fifo) {
        expect(completed.map((p) => `${p.group}:${p.n}`)).toEqual(
          range(0, perGroup).flatMap((n) => groups.map((g) => `${g}:${n}`))
        )
      }
    })
}

const r12: Case = {
  id: "12",
  title: "rate limit: at most M starts per window",
  run: (kit) =>
    Effect.gen(function* () {
      const queue = yield* newQueue(kit)
      const job = Job.make("conformance.rate-limit", { queue, payload: N })
      const limit = 3
      const window = 600
      const total = 12
      const runs = new Recorder<{ readonly n: number }>()
      yield* Producer.enqueueBatch(
        job,
        range(0, total).map((n) => ({ payload: { n } }))
      )
      yield* startWorker(
        queue,
        [
          Worker.handler(
            job,
            runs.handle(() => Effect.void)
          )
        ],
        {
          concurrency: 10,
          rateLimit: { limit, window: `${window} millis` }
        }
      )
      yield* waitFor(
        kit,
        `${total} jobs to run`,
        () => runs.succeeded().length >= total,
        30_000,
        () => runs.summary()
      )
      yield* quietPeriod(kit, 300)
      expect(runs.count).toBe(total)
      const starts = runs.runs.map((r) => r.startedAt).sort((a, b) => a - b)
      // fixed windows: M in one window and M at the start of the next can fall within one sliding window
      for (let i = 0; i < starts.length; i++) {
        const inWindow = starts.filter((t) => t >= starts[i]! && t < starts[i]! + window - tolerance).length
        expect(inWindow, `starts within ${window} ms of start #${i}`).toBeLessThanOrEqual(2 * limit)
      }
      const elapsed = starts[starts.length - 1]! - starts[0]!
      expect(elapsed, "total time for all starts").toBeGreaterThanOrEqual((total / limit - 1) * window - tolerance)
    })
}

const r13a: Case = {
  id: "13a",
  title: "graceful shutdown: in-flight handlers finish, no new starts",
  run: (kit) =>
    Effect.gen(function* () {
      const queue = yield* newQueue(kit)
      const job = Job.make("conformance.shutdown", { queue, payload: N })
      const first = new Recorder<{ readonly n: number }>()
      const second = new Recorder<{ readonly n: number }>()
      const ids = (yield* Producer.enqueueBatch(
        job,
        range(0, 6).map((n) => ({ payload: { n } }))
      )).map((r) => r.id)
      const grace = kit.scaled(5000)
      const scope = yield* Scope.make()
      yield* startWorker(
        queue,
        [
          Worker.handler(
            job,
            first.handle(() => Effect.sleep(1000))
          )
        ],
        {
          concurrency: 3,
          gracePeriod: grace
        }
      ).pipe(Scope.provide(scope))
      yield* waitFor(
        kit,
        "3 handlers to start",
        () => first.count >= 3,
        15_000,
        () => first.summary()
      )
      const shutdownAt = yield* now
      yield* Scope.close(scope, Exit.void)
      const closedAt = yield* now
      expect(first.count, "no new starts after shutdown began").toBe(3)
      expect(
        first.runs.map((r) => r.outcome),
        "in-flight handlers finished"
      ).toEqual(["succeeded", "succeeded", "succeeded"])
      expect(closedAt - shutdownAt, "shutdown within the grace period").toBeLessThanOrEqual(grace + kit.scaled(1000))
      yield* quietPeriod(kit, 300)
      expect(first.count, "no starts after the worker closed").toBe(3)

      yield* waitForStats(kit, queue, { waiting: 3, active: 0, delayed: 0, dead: 0 })
      yield* startWorker(queue, [
        Worker.handler(
          job,
          second.handle(() => Effect.void)
        )
      ])
      yield* waitFor(
        kit,
        "the other 3 jobs to run on a second worker",
        () => second.count >= 3,
        15_000,
        () => second.summary()
      )
      yield* quietPeriod(kit, 300)
      const all = [...first.runs, ...second.runs].map((r) => r.context.id)
      expect(all.sort()).toEqual([...ids].sort())
      expect(second.runs.every((r) => r.context.attempt === 1)).toBe(true)
    })
}

const r13b: Case = {
  id: "13b",
  title: "graceful shutdown: unfinished handlers released after the grace period and redelivered, no attempt counted",
  run: (kit) =>
    Effect.gen(function* () {
      const queue = yield* newQueue(kit)
      const job = Job.make("conformance.release", { queue, payload: N })
      const first = new Recorder<{ readonly n: number }>()
      const second = new Recorder<{ readonly n: number }>()
      const ids = (yield* Producer.enqueueBatch(
        job,
        range(0, 2).map((n) => ({ payload: { n } }))
      )).map((r) => r.id)
      const grace = 300
      const scope = yield* Scope.make()
      yield* startWorker(
        queue,
        [
          Worker.handler(
            job,
            first.handle(() => Effect.sleep(kit.scaled(30_000)))
          )
        ],
        {
          concurrency: 2,
          gracePeriod: grace,
          lease: "60 seconds"
        }
      ).pipe(Scope.provide(scope))
      yield* waitFor(
        kit,
        "2 handlers to start",
        () => first.count >= 2,
        15_000,
        () => first.summary()
      )
      const shutdownAt = yield* now
      yield* Scope.close(scope, Exit.void)
      const closedAt = yield* now
      expect(closedAt - shutdownAt, "shutdown ends soon after the grace period").toBeLessThanOrEqual(
        grace + kit.scaled(2000)
      )
      expect(first.runs.map((r) => r.outcome)).toEqual(["interrupted", "interrupted"])

      // released, so redelivered now, not after the 60 s lease
      yield* startWorker(queue, [
        Worker.handler(
          job,
          second.handle(() => Effect.void)
        )
      ])
      yield* waitFor(
        kit,
        "both released jobs to run on a second worker",
        () => second.count >= 2,
        15_000,
        () => second.summary()
      )
      yield* quietPeriod(kit, 300)
      expect(second.runs.map((r) => r.context.id).sort()).toEqual([...ids].sort())
      expect(
        second.runs.map((r) => r.context.attempt),
        "a release does not count an attempt"
      ).toEqual([1, 1])
      expect(first.count).toBe(2)
    })
}

const r14a: Case = {
  id: "14a",
  title: "crash without ack → redelivered after the lease",
  run: (kit) =>
    Effect.gen(function* () {
      const broker = yield* Broker.Broker
      const queue = yield* newQueue(kit)
      const job = Job.make("conformance.crash", { queue, payload: N })
      const runs = new Recorder<{ readonly n: number }>()
      const { id } = yield* Producer.enqueue(job, { n: 1 })
      const lease = 2000
      // take the job and never settle it: the process "crashed"
      let taken: ReadonlyArray<Broker.Delivery> = []
      let takeCalledAt = 0
      const deadline = (yield* now) + kit.scaled(15_000)
      while (taken.length === 0) {
        if ((yield* now) > deadline)
          return yield* Effect.die(new Error("conformance: the job was never delivered to take"))
        takeCalledAt = yield* now
        taken = yield* broker.take(queue, { max: 1, lease, wait: 1000 })
      }
      const takenAt = yield* now
      expect(taken).toHaveLength(1)
      expect(taken[0]!.id).toBe(id)

      yield* startWorker(queue, [
        Worker.handler(
          job,
          runs.handle(() => Effect.void)
        )
      ])
      yield* waitFor(kit, "the unsettled job to come back after its lease", () => runs.count >= 1, lease + 15_000)
      yield* quietPeriod(kit, 300)
      expect(runs.count).toBe(1)
      expect(runs.runs[0]!.context.id).toBe(id)
      expect(runs.runs[0]!.startedAt - takeCalledAt, "not before the lease ran out").toBeGreaterThanOrEqual(
        lease - tolerance
      )
      expect(runs.runs[0]!.startedAt - takenAt, "promptly after the lease").toBeLessThanOrEqual(
        lease + kit.scaled(5000)
      )
      yield* waitForDrained(kit, queue)
    })
}

const r14b: Case = {
  id: "14b",
  title: "lease extension keeps a job that outlives its lease single",
  skip: (o) =>
    o.capabilities.leaseExtension
      ? undefined
      : "the broker cannot extend a lease (capabilities.leaseExtension is false)",
  run: (kit) =>
    Effect.gen(function* () {
      const queue = yield* newQueue(kit)
      const job = Job.make("conformance.long", { queue, payload: N })
      const runs = new Recorder<{ readonly n: number }>()
      const lease = 1000
      const handler = Worker.handler(
        job,
        runs.handle(() => Effect.sleep(lease * 3))
      )
      yield* startWorker(queue, [handler], { concurrency: 2, lease: `${lease} millis`, pollWait: 100 })
      yield* startWorker(queue, [handler], { concurrency: 2, lease: `${lease} millis`, pollWait: 100 })
      yield* Producer.enqueue(job, { n: 1 })
      yield* waitFor(
        kit,
        "the long job to finish",
        () => runs.succeeded().length >= 1,
        lease * 3 + 15_000,
        () => runs.summary()
      )
      yield* quietPeriod(kit, lease * 1.5)
      expect(runs.count, "handler invocations").toBe(1)
      yield* waitForDrained(kit, queue)
    })
}

const r15a: Case = {
  id: "15a",
  title: "idempotency: duplicate enqueue with one key → one job, one effect",
  userStore: true,
  run: (kit) =>
    Effect.gen(function* () {
      const queue = yield* newQueue(kit)
      const V = Schema.Struct({ v: Schema.Number })
      const job = Job.make("conformance.idempotent-enqueue", { queue, payload: V })
      const runs = new Recorder<typeof V.Type>()
      const key = `order-${randomSuffix()}`
      const other = `order-${randomSuffix()}`
      const first = yield* Producer.enqueue(job, { v: 1 }, { idempotencyKey: key })
      const again = yield* Producer.enqueue(job, { v: 2 }, { idempotencyKey: key })
      const concurrent = yield* Effect.forEach(
        range(0, 5),
        (i) => Producer.enqueue(job, { v: 10 + i }, { idempotencyKey: key }),
        {
          concurrency: "unbounded"
        }
      )
      const distinct = yield* Producer.enqueue(job, { v: 3 }, { idempotencyKey: other })
      expect(first.duplicate).toBe(false)
      expect(again).toEqual({ id: first.id, duplicate: true })
      for (const result of concurrent) expect(result).toEqual({ id: first.id, duplicate: true })
      expect(distinct.duplicate).toBe(false)
      expect(distinct.id).not.toBe(first.id)

      yield* startWorker(queue, [
        Worker.handler(
          job,
          runs.handle(() => Effect.void)
        )
      ])
      yield* waitFor(
        kit,
        "2 jobs to run",
        () => runs.count >= 2,
        15_000,
        () => runs.summary()
      )
      // once more after completion, within the deduplication window
      yield* Producer.enqueue(job, { v: 4 }, { idempotencyKey: key })
      yield* quietPeriod(kit, 500)
      expect(runs.runs.map((r) => r.payload.v).sort()).toEqual([1, 3])
      expect(runs.of(first.id)[0]?.context.idempotencyKey).toBe(key)
    })
}

const r15b: Case = {
  id: "15b",
  title: "idempotency: duplicate delivery → one effect (worker idempotency guard)",
  userStore: true,
  run: (kit) =>
    Effect.gen(function* () {
      const broker = yield* Broker.Broker
      const queue = yield* newQueue(kit)
      const job = Job.make("conformance.idempotent-delivery", { queue, payload: N })
      const runs = new Recorder<{ readonly n: number }>()
      let effects = 0
      yield* startWorker(
        queue,
        [
          Worker.handler(
            job,
            runs.handle(() =>
              Effect.andThen(
                Effect.sleep(200),
                Effect.sync(() => effects++)
              )
            )
          )
        ],
        { concurrency: 2, idempotency: true }
      )
      const id = `dup-${randomSuffix()}`
      const body = Envelope.encode({
        v: 1,
        id,
        job: job.name,
        payload: { n: 1 },
        attempts: 0,
        maxAttempts: 3,
        enqueuedAt: yield* now,
        priority: 0
      })
      // the same job delivered twice (distinct broker messages, one envelope): at once, then later
      yield* broker.send(queue, [
        { id: `${id}-a`, body, delay: 0, priority: 0 },
        { id: `${id}-b`, body, delay: 0, priority: 0 }
      ])
      yield* waitFor(kit, "the job's effect", () => effects >= 1, 15_000)
      yield* waitForDrained(kit, queue)
      yield* broker.send(queue, [{ id: `${id}-c`, body, delay: 0, priority: 0 }])
      yield* waitForDrained(kit, queue)
      yield* quietPeriod(kit, 500)
      expect(effects, "the effect applied once").toBe(1)
      expect(runs.count, "the handler ran once").toBe(1)
      expect(yield* DeadLetters.count(queue)).toBe(0)
    })
}

const r16: Case = {
  id: "16",
  title: "scheduler: two instances, exactly one job per tick",
  userStore: true,
  run: (kit) =>
    Effect.gen(function* () {
      const broker = yield* Broker.Broker
      const store = yield* Idempotency.IdempotencyStore
      const queue = yield* newQueue(kit)
      const Tick = Schema.Struct({ tick: Schema.Number })
      const job = Job.make("conformance.tick", { queue, payload: Tick })
      const runs = new Recorder<typeof Tick.Type>()
      yield* startWorker(queue, [
        Worker.handler(
          job,
          runs.handle(() => Effect.void)
        )
      ])
      const every = 500
      const name = `conformance-${randomSuffix()}`
      const scope = yield* Scope.make()
      for (let instance = 0; instance < 2; instance++) {
        // two producers, as two processes would have, sharing the broker and the store
        const producer = yield* Producer.make(broker, store)
        yield* Scheduler.run({ name, timing: { every: `${every} millis` }, job, payload: (tick) => ({ tick }) }).pipe(
          Effect.provideService(Producer.Producer, producer),
          Scope.provide(scope)
        )
      }
      yield* Effect.sleep(2600) // the experiment's length: about 5 ticks
      yield* Scope.close(scope, Exit.void)
      yield* waitForDrained(kit, queue)
      yield* quietPeriod(kit, 300)
      const perTick = new Map<number, number>()
      for (const run of runs.runs) perTick.set(run.payload.tick, (perTick.get(run.payload.tick) ?? 0) + 1)
      const doubled = [...perTick].filter(([, n]) => n !== 1)
      expect(doubled, "ticks with more than one job").toEqual([])
      expect(perTick.size, "ticks seen").toBeGreaterThanOrEqual(2)
      for (const tick of perTick.keys()) expect(tick % every).toBe(0)
    })
}

const r17: Case = {
  id: "17",
  title: "stats match reality; queues never cross",
  run: (kit) =>
    Effect.gen(function* () {
      const queueA = yield* newQueue(kit, "a")
      const queueB = yield* newQueue(kit, "b")
      const Mode = Schema.Struct({ mode: Schema.Literals(["block", "dead", "later", "quick"]), n: Schema.Number })
      // one job name on both queues, so a crossed job would be handled (and seen) rather than dead-lettered
      const jobA = Job.make("conformance.stats", { queue: queueA, payload: Mode })
      const jobB = Job.make("conformance.stats", { queue: queueB, payload: Mode })
      const runsA = new Recorder<typeof Mode.Type>()
      const runsB = new Recorder<typeof Mode.Type>()
      const gate = yield* Deferred.make<void>()

      const maxDelay = kit.capabilities.maxDelay
      // delayed long enough to stay delayed for the whole case, even on a slow broker
      const delayed = maxDelay >= 60_000 ? 2 : 0
      const delay = Math.min(600_000, maxDelay)
      const idsA: Array<string> = []
      for (const n of range(0, delayed)) {
        idsA.push((yield* Producer.enqueue(jobA, { mode: "later", n }, { delay: `${delay} millis` })).id)
      }
      for (const n of range(0, 3)) idsA.push((yield* Producer.enqueue(jobA, { mode: "block", n })).id)
      const idsB = (yield* Producer.enqueueBatch(
        jobB,
        range(0, 2).map((n) => ({ payload: { mode: "quick" as const, n } }))
      )).map((r) => r.id)
      yield* waitForStats(kit, queueA, { waiting: 3, active: 0, delayed, dead: 0 })
      yield* waitForStats(kit, queueB, { waiting: 2, active: 0, delayed: 0, dead: 0 })

      yield* startWorker(
        queueA,
        [
          Worker.handler(
            jobA,
            runsA.handle((p) =>
              p.mode === "block"
                ? Deferred.await(gate)
                : p.mode === "dead"
                  ? Effect.fail(new Worker.Unrecoverable({ message: "dead on purpose" }))
                  : Effect.void
            )
          )
        ],
        { concurrency: 2 }
      )
      yield* waitForStats(kit, queueA, { waiting: 1, active: 2, delayed, dead: 0 })
      yield* waitForStats(kit, queueB, { waiting: 2, active: 0, delayed: 0, dead: 0 })

      yield* Deferred.succeed(gate, undefined)
      yield* waitForStats(kit, queueA, { waiting: 0, active: 0, delayed, dead: 0 })
      idsA.push((yield* Producer.enqueue(jobA, { mode: "dead", n: 9 })).id)
      yield* waitForStats(kit, queueA, { waiting: 0, active: 0, delayed, dead: 1 })

      yield* startWorker(queueB, [
        Worker.handler(
          jobB,
          runsB.handle(() => Effect.void)
        )
      ])
      yield* waitFor(
        kit,
        "queue B's jobs to run",
        () => runsB.count >= 2,
        15_000,
        () => runsB.summary()
      )
      yield* waitForStats(kit, queueB, { waiting: 0, active: 0, delayed: 0, dead: 0 })
      yield* quietPeriod(kit, 300)

      expect(runsA.runs.map((r) => r.context.id).sort(), "jobs seen on queue A").toEqual(idsA.slice(delayed).sort())
      expect(runsA.runs.every((r) => r.context.queue === queueA)).toBe(true)
      expect(runsB.runs.map((r) => r.context.id).sort(), "jobs seen on queue B").toEqual([...idsB].sort())
      expect(runsB.runs.every((r) => r.context.queue === queueB)).toBe(true)
      expect(yield* DeadLetters.count(queueB)).toBe(0)
    })
}

const r18: Case = {
  id: "18",
  title: "payload over the limit → PayloadTooLarge before any I/O; unencodable payload → EncodeError; nothing sent",
  run: (kit) =>
    Effect.gen(function* () {
      const queue = yield* newQueue(kit)
      const counting = countingBroker(yield* Broker.Broker)
      const producer = yield* Producer.make(counting.broker, undefined)
      const Data = Schema.Struct({ data: Schema.String })
      const job = Job.make("conformance.large", { queue, payload: Data })
      const limit = Math.min(Envelope.maxBytes, kit.capabilities.maxPayloadBytes)

      const ascii = yield* Effect.flip(producer.enqueue(job, { data: "x".repeat(limit) }))
      expect(ascii._tag).toBe("PayloadTooLarge")
      if (ascii._tag === "PayloadTooLarge") {
        expect(ascii.limit).toBe(limit)
        expect(ascii.size).toBeGreaterThan(limit)
      }
      // fewer UTF-16 units than the limit, more UTF-8 bytes
      const wide = yield* Effect.flip(producer.enqueue(job, { data: "é".repeat(Math.ceil(limit / 2)) }))
      expect(wide._tag).toBe("PayloadTooLarge")
      const batch = yield* Effect.flip(
        producer.enqueueBatch(job, [{ payload: { data: "small" } }, { payload: { data: "y".repeat(limit) } }])
      )
      expect(batch._tag, "one oversized job fails the whole batch").toBe("PayloadTooLarge")

      const Numbers = Schema.Struct({ n: Schema.Number })
      const numbers = Job.make("conformance.numbers", { queue, payload: Numbers })
      const Loose = Job.make("conformance.loose", { queue, payload: Schema.Unknown })
      const cyclic: Record<string, unknown> = {}
      cyclic["self"] = cyclic
      for (const n of [Number.NaN, Number.POSITIVE_INFINITY]) {
        expect((yield* Effect.flip(producer.enqueue(numbers, { n })))._tag, String(n)).toBe("EncodeError")
      }
      for (const [label, payload] of [
        ["BigInt", 10n],
        ["function", () => 1],
        ["cycle", cyclic]
      ] as const) {
        expect((yield* Effect.flip(producer.enqueue(Loose, payload)))._tag, label).toBe("EncodeError")
      }
      expect(counting.sends(), "send calls for refused payloads").toBe(0)

      // the queue holds only what was accepted
      const runs = new Recorder<typeof Data.Type>()
      const ok = yield* producer.enqueue(job, { data: "small" })
      expect(counting.sends()).toBe(1)
      yield* startWorker(queue, [
        Worker.handler(
          job,
          runs.handle(() => Effect.void)
        )
      ])
      yield* waitFor(kit, "the accepted job to run", () => runs.count >= 1, 15_000)
      yield* waitForDrained(kit, queue)
      yield* quietPeriod(kit, 300)
      expect(runs.runs.map((r) => r.context.id)).toEqual([ok.id])
      expect(yield* DeadLetters.count(queue)).toBe(0)
    })
}

const probe = (id: string, extra?: Partial<Broker.OutgoingMessage>): Broker.OutgoingMessage => ({
  id,
  body: JSON.stringify({ probe: id }),
  delay: 0,
  priority: 0,
  ...extra
})

/** Take until something comes or `timeout` (scaled) passes. */
const takeSome = (kit: Kit, broker: Broker.BrokerShape, queue: string, max: number, lease: number, timeout: number) =>
  Effect.gen(function* () {
    const deadline = (yield* now) + kit.scaled(timeout)
    while (true) {
      const got = yield* broker.take(queue, { max, lease, wait: 1000 })
      if (got.length > 0 || (yield* now) > deadline) return got
    }
  })

const r19: Case = {
  id: "19",
  title: "declared capabilities match the broker's and its observed behaviour",
  timeout: 90_000,
  run: (kit) =>
    Effect.gen(function* () {
      const broker = yield* Broker.Broker
      const declared = kit.capabilities
      expect(broker.capabilities, "broker.capabilities equals the declared capabilities").toEqual(declared)
      expect(declared.maxPayloadBytes).toBeGreaterThan(0)
      expect(declared.maxDelay).toBeGreaterThanOrEqual(0)
      expect(["none", "per-group", "fifo"]).toContain(declared.ordering)

      // deduplication
      {
        const queue = yield* newQueue(kit, "dedup")
        const id = `probe-${randomSuffix()}`
        const [first] = yield* broker.send(queue, [probe(id)])
        expect(first).toMatchObject({ id, duplicate: false })
        const [second] = yield* broker.send(queue, [probe(id)])
        expect(second?.duplicate, `second send with one id (deduplication: ${declared.deduplication})`).toBe(
          declared.deduplication
        )
        if (declared.deduplication && second?.existingState !== undefined) expect(second.existingState).toBe("waiting")
      }

      // the largest body core will send (min of the declared and the library cap) is taken and delivered intact
      {
        const size = Math.min(declared.maxPayloadBytes, Envelope.maxBytes)
        const queue = yield* newQueue(kit, "size")
        const id = `probe-${randomSuffix()}`
        const body = JSON.stringify({ fill: "" })
        const fill = "z".repeat(size - Buffer.byteLength(body))
        const big = JSON.stringify({ fill })
        expect(Buffer.byteLength(big)).toBe(size)
        yield* broker.send(queue, [{ ...probe(id), body: big }])
        const [delivery] = yield* takeSome(kit, broker, queue, 1, 30_000, 15_000)
        expect(delivery?.body.length, `a body of ${size} bytes comes back intact`).toBe(big.length)
        expect(delivery?.body === big).toBe(true)
        if (delivery) yield* delivery.ack
      }

      // priorities
      if (declared.priorities) {
        const queue = yield* newQueue(kit, "prio")
        yield* broker.send(queue, [probe("low", { priority: 1 })])
        yield* broker.send(queue, [probe("high", { priority: 8 })])
        yield* waitForStats(kit, queue, { waiting: 2, active: 0, delayed: 0, dead: 0 })
        const [first] = yield* takeSome(kit, broker, queue, 1, 30_000, 15_000)
        expect(first?.id, "priorities: the higher priority comes first").toBe("high")
      }

      // per-group: a group's second message waits while its first is in flight
      if (declared.ordering === "per-group") {
        const queue = yield* newQueue(kit, "group")
        yield* broker.send(queue, [probe("g-1", { group: "g" }), probe("g-2", { group: "g" })])
        const firstTake = yield* takeSome(kit, broker, queue, 2, 30_000, 15_000)
        expect(firstTake.map((d) => d.id)).toEqual(["g-1"])
        expect(
          yield* broker.take(queue, { max: 2, lease: 30_000, wait: 500 }),
          "group blocked while g-1 is in flight"
        ).toEqual([])
        yield* firstTake[0]!.ack
        const next = yield* takeSome(kit, broker, queue, 2, 30_000, 15_000)
        expect(next.map((d) => d.id)).toEqual(["g-2"])
        yield* next[0]!.ack
      }

      // native delay up to maxDelay
      const nativeDelay = Math.min(2000, declared.maxDelay)
      if (nativeDelay >= 1000) {
        const queue = yield* newQueue(kit, "delay")
        const sentAt = yield* now
        yield* broker.send(queue, [probe("later", { delay: nativeDelay })])
        // half the delay: brokers that count waits in whole seconds still return before it is due
        const early = yield* broker.take(queue, { max: 1, lease: 30_000, wait: nativeDelay / 2 })
        expect(early, "nothing before the delay").toEqual([])
        const [later] = yield* takeSome(kit, broker, queue, 1, 30_000, nativeDelay + 10_000)
        const at = yield* now
        expect(later?.id).toBe("later")
        expect(at - sentAt, "delivered not before the delay").toBeGreaterThanOrEqual(nativeDelay - tolerance)
        if (later) yield* later.ack
      }

      // lease extension
      if (declared.leaseExtension) {
        const queue = yield* newQueue(kit, "lease")
        yield* broker.send(queue, [probe("leased")])
        const [delivery] = yield* takeSome(kit, broker, queue, 1, 1500, 15_000)
        expect(delivery?.id).toBe("leased")
        yield* Effect.sleep(700)
        yield* delivery!.extendLease(5000)
        const again = yield* broker.take(queue, { max: 1, lease: 30_000, wait: 2500 })
        expect(again, "an extended lease holds past its original end").toEqual([])
        yield* delivery!.ack
      }
    })
}

const r20: Case = {
  id: "20",
  title: "broker restart: no confirmed job lost, the worker resumes",
  timeout: 180_000,
  skip: (o) =>
    o.restart === undefined
      ? (o.restartSkipReason ?? "no restart command given (options.restart)")
      : o.capabilities.persistent
        ? undefined
        : "the broker does not declare persistence (capabilities.persistent is false)",
  layer: (o) => o.restart!.layer,
  run: (kit) =>
    Effect.gen(function* () {
      const queue = yield* newQueue(kit)
      const job = Job.make("conformance.restart", { queue, payload: N })
      const runs = new Recorder<{ readonly n: number }>()
      const restarted = yield* Deferred.make<void>()
      const total = 20
      // started before the restart: the running worker must resume by itself
      // a short lease: deliveries held across the restart whose acks fail come back soon
      yield* startWorker(
        queue,
        [
          Worker.handler(
            job,
            runs.handle(() => Deferred.await(restarted))
          )
        ],
        {
          concurrency: 5,
          lease: "5 seconds"
        }
      )
      const ids = (yield* Producer.enqueueBatch(
        job,
        range(0, total).map((n) => ({ payload: { n } }))
      )).map((r) => r.id)
      yield* waitFor(kit, "the worker to hold jobs in flight", () => runs.count >= 1, 15_000)
      yield* kit.options.restart!.restart
      yield* Deferred.succeed(restarted, undefined)
      yield* waitFor(
        kit,
        `all ${total} confirmed jobs to complete after the restart`,
        () => ids.every((id) => runs.of(id).some((r) => r.outcome === "succeeded")),
        120_000,
        () => `${new Set(runs.succeeded().map((r) => r.context.id)).size} of ${total} completed`
      )
    })
}

const badQueueNames: ReadonlyArray<readonly [string, string]> = [
  ["empty", ""],
  ["81 characters", "q".repeat(81)],
  ["colon", "a:b"],
  ["hash tag", "{x}"],
  ["brace", "a{b"],
  ["space", "a b"],
  ["tab", "a\tb"],
  ["newline", "a\nb"],
  ["star", "a*b"],
  ["question mark", "a?b"],
  ["bracket", "a[b]"],
  ["amq. prefix", "amq.conformance"]
]

const r21: Case = {
  id: "21",
  title: "bad input gets a typed answer (InvalidQueueName, InvalidOption), nothing sent",
  run: (kit) =>
    Effect.gen(function* () {
      const real = yield* Broker.Broker
      const counting = countingBroker(real)
      const producer = yield* Producer.make(counting.broker, undefined)
      const withBroker = Effect.provideService(Broker.Broker, counting.broker)
      const tagOf = <A, E extends { readonly _tag: string }, R>(effect: Effect.Effect<A, E, R>) =>
        Effect.map(Effect.flip(effect), (e) => e._tag)

      for (const [label, name] of badQueueNames) {
        const job = Job.make("conformance.bad", { queue: name, payload: N })
        expect(yield* tagOf(producer.enqueue(job, { n: 1 })), `enqueue to queue name: ${label}`).toBe(
          "InvalidQueueName"
        )
        expect(
          yield* tagOf(Effect.scoped(startWorker(name, [Worker.handler(job, () => Effect.void)])).pipe(withBroker)),
          `worker on: ${label}`
        ).toBe("InvalidQueueName")
        expect(yield* tagOf(DeadLetters.count(name).pipe(withBroker)), `DLQ count on: ${label}`).toBe(
          "InvalidQueueName"
        )
        expect(yield* tagOf(Queues.stats(name).pipe(withBroker)), `stats on: ${label}`).toBe("InvalidQueueName")
      }
      // a name core accepts but this broker refuses (SQS FIFO without ".fifo")
      const base = `conf-${kit.caseId}-${randomSuffix()}`
      if (real.validateQueueName(base) !== undefined) {
        const job = Job.make("conformance.bad", { queue: base, payload: N })
        expect(yield* tagOf(producer.enqueue(job, { n: 1 })), "a name the broker refuses").toBe("InvalidQueueName")
      }

      const queue = yield* newQueue(kit)
      const job = Job.make("conformance.options", { queue, payload: N })
      const badOptions: ReadonlyArray<readonly [string, Producer.EnqueueOptions]> = [
        ["negative delay", { delay: -1 }],
        ["NaN delay", { delay: Number.NaN }],
        ["infinite delay", { delay: Number.POSITIVE_INFINITY }],
        ["negative infinite delay", { delay: Number.NEGATIVE_INFINITY }],
        ["nonsense delay", { delay: "soon" as never }],
        ["attempts 0", { attempts: 0 }],
        ["negative attempts", { attempts: -1 }],
        ["fractional attempts", { attempts: 1.5 }],
        ["NaN attempts", { attempts: Number.NaN }],
        ["priority 10", { priority: 10 }],
        ["negative priority", { priority: -1 }],
        ["fractional priority", { priority: 2.5 }],
        ["negative timeout", { timeout: -5 }],
        ["empty idempotency key", { idempotencyKey: "" }],
        ["id with a colon", { id: "a:b" }],
        ["empty group", { group: "" }]
      ]
      for (const [label, options] of badOptions) {
        expect(yield* tagOf(producer.enqueue(job, { n: 1 }, options)), label).toBe("InvalidOption")
      }
      const zeroAttempts = Job.make("conformance.zero", { queue, payload: N, attempts: 0 })
      expect(yield* tagOf(producer.enqueue(zeroAttempts, { n: 1 })), "job defined with attempts 0").toBe(
        "InvalidOption"
      )
      expect(
        yield* tagOf(
          producer.enqueueBatch(job, [{ payload: { n: 1 } }, { payload: { n: 2 }, options: { delay: -1 } }])
        ),
        "batch with one bad option"
      ).toBe("InvalidOption")

      const handler = Worker.handler(job, () => Effect.void)
      const badWorkers: ReadonlyArray<readonly [string, Partial<Worker.Options<never>>]> = [
        ["concurrency 0", { concurrency: 0 }],
        ["fractional concurrency", { concurrency: 1.5 }],
        ["lease under 1 second", { lease: 100 }],
        ["negative grace period", { gracePeriod: -1 }],
        ["rate limit 0", { rateLimit: { limit: 0, window: "1 second" } }],
        ["rate window 0", { rateLimit: { limit: 1, window: 0 } }]
      ]
      for (const [label, options] of badWorkers) {
        expect(
          yield* tagOf(Effect.scoped(startWorker(queue, [handler], options)).pipe(withBroker)),
          `worker ${label}`
        ).toBe("InvalidOption")
      }
      const otherQueue = Job.make("conformance.elsewhere", { queue: `${queue}x`, payload: N })
      expect(
        yield* tagOf(
          Effect.scoped(startWorker(queue, [Worker.handler(otherQueue, () => Effect.void)])).pipe(withBroker)
        ),
        "a handler for another queue's job"
      ).toBe("InvalidOption")
      expect(counting.sends(), "send calls for bad input").toBe(0)
    })
}

/** Cases 11–21. */
export const casesB: ReadonlyArray<Case> = [
  r11a,
  r11b,
  r12,
  r13a,
  r13b,
  r14a,
  r14b,
  r15a,
  r15b,
  r16,
  r17,
  r18,
  r19,
  r20,
  r21
]
