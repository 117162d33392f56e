import { describe, expect, it } from "@effect/vitest"
import { DeadLetters, Job, Metrics, Producer, Worker } from "@errand/core"
import { Effect, Layer, Metric, Schedule, Schema, Tracer } from "effect"
import * as MemoryBroker from "../src/MemoryBroker.js"

// What the README promises about observability: metrics tagged by queue and job, and a span per
// processed job linked to the span that enqueued it.

const Payload = Schema.Struct({ ok: Schema.Boolean })

const waitFor = (condition: () => boolean) =>
  Effect.gen(function* () {
    const deadline = Date.now() + 10_000
    while (!condition()) {
      if (Date.now() > deadline) return yield* Effect.die(new Error("timed out"))
      yield* Effect.sleep(20)
    }
  })

describe("observability", () => {
  it.live("counters and histograms move per queue and job", () =>
    Effect.gen(function* () {
      const queue = `metrics-${Date.now().toString(36)}`
      const job = Job.make("measured", { queue, payload: Payload, attempts: 2, backoff: Schedule.spaced("10 millis") })
      let runs = 0
      yield* Worker.run({
        queue,
        handlers: [
          Worker.handler(job, ({ ok }) =>
            Effect.suspend(() => {
              runs++
              return ok ? Effect.void : Effect.fail("boom")
            })
          )
        ]
      })
      yield* Producer.enqueue(job, { ok: true })
      yield* Producer.enqueue(job, { ok: false })
      const dead = { count: 0 }
      yield* waitFor(() => runs === 3)
      while (dead.count === 0) {
        dead.count = yield* DeadLetters.count(queue)
        yield* Effect.sleep(20)
      }
      const tagged = Metrics.tagged(queue, "measured")
      const count = (metric: Metric.Metric<number, unknown>) =>
        Effect.map(Metric.value(metric), (state) => (state as { count: number }).count)
      expect(yield* count(tagged.enqueued)).toBe(2)
      expect(yield* count(tagged.started)).toBe(3)
      expect(yield* count(tagged.completed)).toBe(1)
      expect(yield* count(tagged.failed)).toBe(2)
      expect(yield* count(tagged.retried)).toBe(1)
      expect(yield* count(tagged.deadLettered)).toBe(1)
      expect(yield* count(tagged.processingTime)).toBe(3)
      expect(yield* count(tagged.queueWait)).toBe(3)
      // tags keep queues apart
      expect(yield* count(Metrics.tagged(`${queue}-other`, "measured").started)).toBe(0)
      // the same series as the exported metric tagged the usual way, exported once with its tags
      expect(yield* count(Metric.withAttributes(Metrics.started, { queue, job: "measured" }))).toBe(3)
      expect(yield* count(Metric.withAttributes(Metrics.queueWait, { queue, job: "measured" }))).toBe(3)
      const series = (yield* Metric.snapshot).filter(
        (m) => m.id === "errand_jobs_started_total" && m.attributes?.["queue"] === queue
      )
      expect(series.map((m) => [m.attributes, m.description, m.state])).toEqual([
        [{ queue, job: "measured" }, "Handler runs started", { count: 3, incremental: true }]
      ])
    }).pipe(Effect.scoped, Effect.provide(Producer.layer.pipe(Layer.provideMerge(MemoryBroker.layer()))))
  )

  it.live("the processing span links to the span that enqueued the job", () => {
    const spans: Array<Tracer.NativeSpan> = []
    const tracer = Tracer.make({
      span(options) {
        const span = new Tracer.NativeSpan(options)
        spans.push(span)
        return span
      }
    })
    return Effect.gen(function* () {
      const queue = `spans-${Date.now().toString(36)}`
      const job = Job.make("traced", { queue, payload: Payload })
      let done = false
      yield* Worker.run({ queue, handlers: [Worker.handler(job, () => Effect.sync(() => (done = true)))] })
      yield* Producer.enqueue(job, { ok: true }).pipe(Effect.withSpan("http.request"))
      yield* waitFor(() => done && spans.some((s) => s.name === "errand.process traced" && s.status._tag === "Ended"))
      const request = spans.find((s) => s.name === "http.request")!
      const enqueue = spans.find((s) => s.name === "errand.enqueue")!
      const process = spans.find((s) => s.name === "errand.process traced")!
      expect(enqueue.parent._tag === "Some" && enqueue.parent.value.spanId).toBe(request.spanId)
      expect(enqueue.attributes.get("errand.queue")).toBe(queue)
      expect(process.kind).toBe("consumer")
      expect(process.attributes.get("errand.attempt")).toBe(1)
      expect(process.links.map((link) => [link.span.traceId, link.span.spanId])).toEqual([
        [enqueue.traceId, enqueue.spanId]
      ])
    }).pipe(
      Effect.scoped,
      Effect.provide(Producer.layer.pipe(Layer.provideMerge(MemoryBroker.layer()))),
      Effect.provideService(Tracer.Tracer, tracer)
    )
  })
  it.live("with no tracing backend installed, no span is made per job", () =>
    Effect.gen(function* () {
      // Effect's default tracer keeps spans in memory and never exports them, so core skips them
      // (internal/tracing.ts); with a backend installed the handler runs in its `errand.process` span
      const seen: Array<string | undefined> = []
      const run = (tracer: Tracer.Tracer | undefined) =>
        Effect.gen(function* () {
          const queue = `nospan-${Date.now().toString(36)}-${seen.length}`
          const job = Job.make("plain", { queue, payload: Payload })
          let done = false
          yield* Worker.run({
            queue,
            handlers: [
              Worker.handler(job, () =>
                Effect.map(Effect.option(Effect.currentSpan), (span) => {
                  seen.push(span._tag === "Some" ? span.value.name : undefined)
                  done = true
                })
              )
            ]
          })
          yield* Producer.enqueue(job, { ok: true }).pipe(Effect.withSpan("http.request"))
          yield* waitFor(() => done)
        }).pipe(
          Effect.scoped,
          Effect.provide(Producer.layer.pipe(Layer.provideMerge(MemoryBroker.layer()))),
          tracer === undefined ? (self) => self : Effect.provideService(Tracer.Tracer, tracer)
        )
      yield* run(undefined)
      yield* run(Tracer.make({ span: (options) => new Tracer.NativeSpan(options) }))
      expect(seen).toEqual([undefined, "errand.process plain"])
    })
  )
})
