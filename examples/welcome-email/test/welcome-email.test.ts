import { Broker, DeadLetters, Errors, Producer, Queues } from "@errand/core"
import * as MemoryBroker from "@errand/testing/MemoryBroker"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Exit, Fiber, Layer, Scope } from "effect"
import { TestClock } from "effect/testing"
import * as App from "../src/app.js"
import * as Http from "../src/http.js"
import * as Jobs from "../src/jobs.js"
import { Mailer, type Options as MailerOptions } from "../src/mailer.js"
import * as Worker from "../src/worker.js"

const start = Date.UTC(2026, 10, 27, 7, 30, 0)
const hour = 60 * 60 * 1000

const appLayer = (mailer?: MailerOptions, broker: Layer.Layer<Broker.Broker> = MemoryBroker.layer()) =>
  App.layer({ broker, mailer })

/** Real-time pause: the app's clock is the TestClock. */
const pause = (ms: number) => TestClock.withLive(Effect.sleep(ms))

/** Wait until nothing is waiting or running on the queue. */
const settle = Effect.gen(function* () {
  for (let i = 0; i < 2000; i++) {
    const s = yield* Queues.stats(Jobs.queue)
    if (s.waiting === 0 && s.active === 0) return
    yield* pause(5)
  }
  throw new Error("the queue did not settle")
})

/** Move the TestClock forward one step at a time, settling after each. */
const advance = (total: number, step = 1000) =>
  Effect.gen(function* () {
    for (let t = 0; t < total; t += step) {
      yield* TestClock.adjust(Math.min(step, total - t))
      yield* settle
    }
  })

const post = (body: unknown) =>
  Http.route("POST", "/api/welcome-email", typeof body === "string" ? body : JSON.stringify(body))

const sentTo = (template: string) =>
  Effect.map(
    Mailer.use((m) => m.sent),
    (sent) => sent.filter((e) => e.template === template)
  )

describe("HTTP answers", () => {
  it.effect("202 with the job id at once; the same user again is a duplicate with the same id", () =>
    Effect.gen(function* () {
      const first = yield* post({ userId: "alice" })
      const second = yield* post({ userId: "alice" })
      expect(first.status).toBe(202)
      expect(second.status).toBe(202)
      expect(first.body).toMatchObject({ status: "accepted", duplicate: false })
      expect(second.body).toMatchObject({ status: "accepted", duplicate: true, id: (first.body as { id: string }).id })
      // nothing ran yet: the answer does not wait for the email
      expect(yield* sentTo("welcome")).toHaveLength(0)
      expect((yield* Queues.stats(Jobs.queue)).waiting).toBe(1)
    }).pipe(Effect.provide(appLayer()))
  )

  it.effect("400 with a reason for a bad body", () =>
    Effect.gen(function* () {
      const cases = [
        ["not JSON", "{userId: 1", "not valid JSON"],
        ["not an object", "[1]", "JSON object"],
        ["missing userId", { user: "x" }, "userId is missing"],
        ["empty userId", { userId: "" }, "non-empty"],
        ["wrong type", { userId: 42 }, "Expected string"],
        ["too long", { userId: "x".repeat(201) }, "at most 200"]
      ] as const
      for (const [name, body, reason] of cases) {
        const answer = yield* post(body)
        expect(answer.status, name).toBe(400)
        expect((answer.body as { reason: string }).reason, name).toContain(reason)
      }
      expect((yield* Queues.stats(Jobs.queue)).waiting).toBe(0)
    }).pipe(Effect.provide(appLayer()))
  )

  it.effect("PayloadTooLarge → 413", () =>
    Effect.gen(function* () {
      const answer = yield* post({ userId: "x".repeat(200) })
      expect(answer.status).toBe(413)
      expect(answer.body).toMatchObject({ error: "PayloadTooLarge", limit: 300 })
    }).pipe(Effect.provide(appLayer(undefined, MemoryBroker.layer({ maxPayloadBytes: 300 }))))
  )

  it.effect("BrokerError → 503 with Retry-After, and no broker detail", () => {
    const down = Layer.effect(
      Broker.Broker,
      Effect.map(
        MemoryBroker.make(),
        (broker): Broker.BrokerShape => ({
          ...broker,
          send: () =>
            Effect.fail(
              new Errors.BrokerError({
                reason: "Connection",
                operation: "send",
                message: "connect ECONNREFUSED 10.0.0.7:6379"
              })
            )
        })
      )
    )
    return Effect.gen(function* () {
      const answer = yield* post({ userId: "alice" })
      expect(answer.status).toBe(503)
      expect(answer.headers).toMatchObject({ "retry-after": "5" })
      expect(JSON.stringify(answer.body)).not.toContain("10.0.0.7")
    }).pipe(Effect.provide(appLayer(undefined, down)))
  })

  it("every enqueue error has its answer", () => {
    expect(
      Http.enqueueErrorAnswer(new Errors.InvalidOption({ option: "delay", reason: "must be finite" })).status
    ).toBe(400)
    expect(Http.enqueueErrorAnswer(new Errors.PayloadTooLarge({ size: 2, limit: 1 })).status).toBe(413)
    expect(Http.enqueueErrorAnswer(new Errors.EncodeError({ job: "j", message: "m" })).status).toBe(400)
    expect(Http.enqueueErrorAnswer(new Errors.DuplicateJob({ id: "k", state: "dead" })).status).toBe(409)
    expect(
      Http.enqueueErrorAnswer(new Errors.BrokerError({ reason: "Timeout", operation: "send", message: "m" })).status
    ).toBe(503)
  })

  it.effect("the real server answers over HTTP", () =>
    Effect.gen(function* () {
      const server = yield* Http.serve({ port: 0 })
      const call = (method: string, path: string, body?: string) =>
        Effect.promise(async () => {
          const response = await fetch(`${server.url}${path}`, { method, ...(body !== undefined ? { body } : {}) })
          return { status: response.status, body: (await response.json()) as Record<string, unknown> }
        })
      expect((yield* call("POST", "/api/welcome-email", JSON.stringify({ userId: "bob" }))).status).toBe(202)
      expect((yield* call("POST", "/api/welcome-email", "nope")).status).toBe(400)
      expect(
        (yield* call("POST", "/api/welcome-email", JSON.stringify({ userId: "x".repeat(Http.maxBodyBytes) }))).status
      ).toBe(413)
      expect((yield* call("GET", "/api/welcome-email")).status).toBe(405)
      expect((yield* call("GET", "/nowhere")).status).toBe(404)
      const stats = yield* call("GET", "/api/stats")
      expect(stats).toMatchObject({ status: 200, body: { queue: "emails", waiting: 1, dead: 0 } })
    }).pipe(Effect.scoped, Effect.provide(appLayer()))
  )
})

describe("the worker", () => {
  it.effect("sends one welcome email per user, however often it is requested", () =>
    Effect.gen(function* () {
      yield* TestClock.setTime(start)
      yield* Worker.start()
      yield* post({ userId: "alice" })
      yield* post({ userId: "alice" })
      yield* post({ userId: "bob" })
      yield* settle
      expect((yield* sentTo("welcome")).map((e) => e.to).sort()).toEqual(["alice", "bob"])

      // after the broker's own dedup window, a new request is a new job: the worker's idempotency
      // guard acknowledges it without calling the mailer
      yield* TestClock.adjust("1 hour")
      yield* settle
      const calls = (yield* Mailer.use((m) => m.calls)).length
      const again = yield* post({ userId: "alice" })
      expect(again.body).toMatchObject({ duplicate: false })
      yield* settle
      expect((yield* Mailer.use((m) => m.calls)).length).toBe(calls)
      expect((yield* sentTo("welcome")).filter((e) => e.to === "alice")).toHaveLength(1)
    }).pipe(Effect.scoped, Effect.provide(appLayer()))
  )

  it.effect("retries with exponential backoff; after 5 attempts the job is in the DLQ with its error", () =>
    Effect.gen(function* () {
      yield* TestClock.setTime(start)
      yield* Worker.start()
      yield* post({ userId: "alice" })
      yield* post({ userId: "dave" })
      yield* settle
      yield* advance(20_000)
      const calls = yield* Mailer.use((m) => m.calls)
      const alice = calls.filter((c) => c.to === "alice")
      expect(alice.map((c) => [c.at - start, c.ok])).toEqual([
        [0, false],
        [1000, false],
        [3000, true]
      ])
      const dave = calls.filter((c) => c.to === "dave")
      expect(dave.map((c) => c.at - start)).toEqual([0, 1000, 3000, 7000, 15000])
      expect(dave.every((c) => !c.ok)).toBe(true)

      const dead = yield* DeadLetters.list(Jobs.queue)
      expect(dead).toHaveLength(1)
      expect(dead[0]).toMatchObject({ attempts: 5, reason: "exhausted" })
      expect(dead[0]!.error).toContain("MailerError")
      expect(dead[0]!.envelope).toMatchObject({ job: "send-welcome-email", payload: { userId: "dave" } })
      expect(yield* Queues.stats(Jobs.queue)).toEqual({ waiting: 0, active: 0, delayed: 1, dead: 1 })

      // never run again, and asking again says why
      yield* advance(60_000, 10_000)
      expect((yield* Mailer.use((m) => m.calls)).filter((c) => c.to === "dave")).toHaveLength(5)
      expect(yield* post({ userId: "dave" })).toMatchObject({ status: 409, body: { error: "DuplicateJob" } })
    }).pipe(Effect.scoped, Effect.provide(appLayer({ failFirst: { alice: 2 }, alwaysFail: ["dave"] })))
  )

  it.effect("sends the reminder one hour after the welcome email, not before", () =>
    Effect.gen(function* () {
      yield* TestClock.setTime(start)
      yield* Worker.start()
      yield* post({ userId: "carol" })
      yield* settle
      yield* advance(5000)
      const [welcome] = yield* sentTo("welcome")
      expect(welcome!.sentAt).toBe(start + 1000)
      expect(yield* Queues.stats(Jobs.queue)).toMatchObject({ delayed: 1 })

      yield* TestClock.setTime(welcome!.sentAt + hour - 1)
      yield* settle
      expect(yield* sentTo("reminder")).toHaveLength(0)
      yield* TestClock.adjust(1)
      yield* settle
      const reminders = yield* sentTo("reminder")
      expect(reminders.map((r) => [r.to, r.sentAt])).toEqual([["carol", welcome!.sentAt + hour]])
    }).pipe(Effect.scoped, Effect.provide(appLayer({ failFirst: { carol: 1 } })))
  )

  it.effect("runs the daily digest at 09:00 UTC, once a day", () =>
    Effect.gen(function* () {
      yield* TestClock.setTime(start)
      yield* Worker.start()
      yield* Worker.scheduleDigest
      yield* post({ userId: "alice" })
      yield* settle
      yield* TestClock.setTime(Date.UTC(2026, 10, 27, 8, 59, 59, 999))
      yield* settle
      expect(yield* sentTo("digest")).toHaveLength(0)
      yield* TestClock.adjust(1)
      yield* settle
      const [digest] = yield* sentTo("digest")
      expect(digest).toMatchObject({
        to: "team",
        subject: "Daily digest 2026-11-27",
        sentAt: Date.UTC(2026, 10, 27, 9)
      })
      expect(digest!.text).toContain("1 new user(s) welcomed: alice")

      yield* TestClock.adjust("1 day")
      yield* settle
      const digests = yield* sentTo("digest")
      expect(digests.map((d) => d.sentAt)).toEqual([Date.UTC(2026, 10, 27, 9), Date.UTC(2026, 10, 28, 9)])
    }).pipe(Effect.scoped, Effect.provide(appLayer()))
  )

  it.effect("closing the worker's scope lets the in-flight email finish and starts nothing new", () =>
    Effect.gen(function* () {
      const scope = yield* Scope.make()
      yield* Worker.start({ concurrency: 1, gracePeriod: "30 seconds" }).pipe(Scope.provide(scope))
      yield* Producer.enqueue(Jobs.SendWelcomeEmail, { userId: "erin" })
      yield* Producer.enqueue(Jobs.SendWelcomeEmail, { userId: "frank" })
      while ((yield* Queues.stats(Jobs.queue)).active === 0) yield* pause(5)

      const closing = yield* Effect.forkChild(Scope.close(scope, Exit.void))
      yield* pause(20)
      expect(closing.pollUnsafe()).toBeUndefined() // still waiting for erin's email
      yield* TestClock.adjust("5 seconds") // the mailer's latency
      yield* Fiber.join(closing)

      expect((yield* sentTo("welcome")).map((e) => e.to)).toEqual(["erin"])
      // frank was never started: still waiting for the next worker
      expect(yield* Queues.stats(Jobs.queue)).toMatchObject({ waiting: 1, active: 0 })
    }).pipe(Effect.provide(appLayer({ latency: "5 seconds" })))
  )
})
