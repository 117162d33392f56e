/**
 * The service on real brokers, selected through `ERRAND_BROKER` exactly as `main.ts` does (the
 * adapter is loaded by dynamic import): Redis and RabbitMQ on loopback (`REDIS_URL`, `AMQP_URL`
 * override), SQS on the fauxqs emulator started here (`SQS_ENDPOINT` overrides). Real time: no
 * reminder hour here, only that the reminder is waiting, delayed, on the broker.
 */
import { DeadLetters, Queues } from "@errand/core"
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { ConfigProvider, Effect, Layer } from "effect"
import * as App from "../src/app.js"
import * as BrokerLayer from "../src/broker.js"
import * as Jobs from "../src/jobs.js"
import { Mailer } from "../src/mailer.js"
// the SQS adapter's own emulator helper: fauxqs bound to 127.0.0.1 on a free port
import * as Fauxqs from "../../../packages/adapter-sqs/test/fauxqs.js"

let emulator: Fauxqs.Emulator | undefined
beforeAll(async () => {
  emulator = await Fauxqs.start()
  // the SDK signs requests even for the emulator: static test credentials, never real ones
  process.env.AWS_ACCESS_KEY_ID ??= "test"
  process.env.AWS_SECRET_ACCESS_KEY ??= "test"
})
afterAll(async () => {
  await emulator?.stop()
})

const cases = [
  { kind: "bullmq", variable: "REDIS_URL", value: () => process.env.REDIS_URL || "redis://127.0.0.1:6379" },
  { kind: "rabbitmq", variable: "AMQP_URL", value: () => process.env.AMQP_URL || "amqp://guest:guest@127.0.0.1:5672" },
  { kind: "sqs", variable: "SQS_ENDPOINT", value: () => emulator!.endpoint }
] as const

/** Poll `condition` every 100 ms until it holds (real brokers: wait on conditions, not sleeps). */
const eventually = <R>(what: string, condition: Effect.Effect<boolean, unknown, R>, timeout = 40_000) =>
  Effect.gen(function* () {
    const deadline = Date.now() + timeout
    while (!(yield* condition)) {
      if (Date.now() > deadline) return yield* Effect.die(new Error(`timed out waiting for ${what}`))
      yield* Effect.sleep(100)
    }
  })

describe("the welcome-email service on real brokers", () => {
  for (const { kind, variable, value: valueOf } of cases) {
    it.live(
      `${kind}: 202s, one email per user, retries, DLQ after 5 attempts, delayed reminder`,
      () => {
        const value = valueOf()
        const run = Date.now().toString(36)
        const [alice, bob, dave] = [`alice-${run}`, `bob-${run}`, `dave-${run}`]
        const config = ConfigProvider.layer(ConfigProvider.fromUnknown({ ERRAND_BROKER: kind, [variable]: value }))
        const layer = App.layer({
          broker: BrokerLayer.layer,
          mailer: { failFirst: { [alice]: 1 }, alwaysFail: [dave] }
        }).pipe(Layer.provide(config))
        return Effect.gen(function* () {
          yield* Queues.destroy(Jobs.queue)
          yield* Effect.addFinalizer(() => Effect.ignore(Queues.destroy(Jobs.queue)))
          const server = yield* App.start({ port: 0 })
          const post = (userId: string) =>
            Effect.promise(async () => {
              const response = await fetch(`${server.url}/api/welcome-email`, {
                method: "POST",
                body: JSON.stringify({ userId })
              })
              return { status: response.status, body: (await response.json()) as { id: string; duplicate: boolean } }
            })
          const first = yield* post(alice)
          const again = yield* post(alice)
          expect(first.status).toBe(202)
          expect(again).toMatchObject({ status: 202, body: { id: first.body.id, duplicate: true } })
          expect((yield* post(bob)).status).toBe(202)
          expect((yield* post(dave)).status).toBe(202)

          const mailer = yield* Mailer
          const welcomed = Effect.map(mailer.sent, (sent) =>
            sent
              .filter((e) => e.template === "welcome")
              .map((e) => e.to)
              .sort()
          )
          yield* eventually(
            "the welcome emails",
            Effect.map(welcomed, (to) => to.length === 2)
          )
          yield* eventually(
            "dave's dead letter",
            Effect.map(DeadLetters.count(Jobs.queue), (n) => n === 1)
          )
          expect(yield* welcomed).toEqual([alice, bob])
          const calls = yield* mailer.calls
          expect(calls.filter((c) => c.to === alice).map((c) => c.ok)).toEqual([false, true])
          expect(calls.filter((c) => c.to === dave)).toHaveLength(5)
          const [dead] = yield* DeadLetters.list(Jobs.queue)
          expect(dead).toMatchObject({ attempts: 5, reason: "exhausted" })
          expect(dead!.error).toContain("MailerError")
          expect(dead!.envelope?.payload).toEqual({ userId: dave })
          // both reminders wait an hour on the broker
          yield* eventually(
            "the delayed reminders",
            Effect.map(Queues.stats(Jobs.queue), (s) => s.delayed === 2)
          )
        }).pipe(Effect.scoped, Effect.provide(layer))
      },
      90_000
    )
  }
})
