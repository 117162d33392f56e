/**
 * The handlers, the worker that runs them, and the daily-digest schedule.
 *
 * @since 0.0.0
 */
import { type Broker, type Errors, Producer, Scheduler, Worker } from "@errand/core"
import { Clock, type Duration, Effect, Schedule, type Scope } from "effect"
import * as Jobs from "./jobs.js"
import { Mailer } from "./mailer.js"

/**
 * Send the welcome email, then enqueue the reminder an hour later.
 *
 * Idempotent twice over: the API enqueues with the key `welcome:<userId>` (a second request
 * while the first job is known is a duplicate), and the worker runs with `idempotency: true`, so a
 * job whose key was already completed (a redelivery, or a new request after the broker forgot the
 * first) is acknowledged without sending again.
 *
 * @since 0.0.0
 */
export const sendWelcome = Worker.handler(Jobs.SendWelcomeEmail, ({ userId }) =>
  Effect.gen(function* () {
    const mailer = yield* Mailer
    yield* mailer.send({
      to: userId,
      template: "welcome",
      subject: "Welcome aboard!",
      text: `Hello ${userId}, welcome to the service.`
    })
    // The email is out: a failure from here on would retry the whole job and send it again, so a
    // broker hiccup is retried in place. The key makes a repeated enqueue harmless.
    yield* Producer.enqueue(
      Jobs.SendReminderEmail,
      { userId },
      {
        delay: Jobs.reminderDelay,
        idempotencyKey: Jobs.reminderKey(userId)
      }
    ).pipe(
      Effect.retry({ times: 5, schedule: Schedule.exponential("100 millis"), while: (e) => e._tag === "BrokerError" })
    )
  })
)

/**
 * Send the one-hour reminder.
 *
 * @since 0.0.0
 */
export const sendReminder = Worker.handler(Jobs.SendReminderEmail, ({ userId }) =>
  Mailer.use((mailer) =>
    mailer.send({
      to: userId,
      template: "reminder",
      subject: "Getting started",
      text: `Hello ${userId}, here are three things to try first.`
    })
  )
)

const day = 24 * 60 * 60 * 1000

/**
 * Send the daily digest: how many users were welcomed in the 24 hours before the run.
 *
 * @since 0.0.0
 */
export const sendDigest = Worker.handler(Jobs.SendDailyDigest, ({ day: date }) =>
  Effect.gen(function* () {
    const mailer = yield* Mailer
    const now = yield* Clock.currentTimeMillis
    const welcomed = (yield* mailer.sent).filter((e) => e.template === "welcome" && e.sentAt > now - day)
    yield* mailer.send({
      to: "team",
      template: "digest",
      subject: `Daily digest ${date}`,
      text: `${welcomed.length} new user(s) welcomed: ${welcomed.map((e) => e.to).join(", ") || "none"}`
    })
  })
)

/**
 * Every handler of the `emails` queue.
 *
 * @since 0.0.0
 */
export const handlers = [sendWelcome, sendReminder, sendDigest]

/**
 * Start the worker in the current scope. Closing the scope shuts it down gracefully: no new
 * jobs, in-flight handlers finish within `gracePeriod`, the rest go back to the broker.
 *
 * @since 0.0.0
 */
export const start = (options?: {
  readonly concurrency?: number | undefined
  readonly gracePeriod?: Duration.Input | undefined
}): Effect.Effect<
  Worker.Worker,
  Errors.InvalidOption | Errors.InvalidQueueName,
  Broker.Broker | Scope.Scope | Mailer | Producer.Producer
> =>
  Worker.run({
    queue: Jobs.queue,
    handlers,
    concurrency: options?.concurrency ?? 10,
    gracePeriod: options?.gracePeriod ?? "10 seconds",
    idempotency: true
  })

/**
 * Run the daily digest schedule in the current scope: one job per day at 09:00, however many
 * instances of the service run.
 *
 * @since 0.0.0
 */
export const scheduleDigest: Effect.Effect<
  void,
  | Errors.InvalidOption
  | Errors.InvalidQueueName
  | Errors.EncodeError
  | Errors.PayloadTooLarge
  | Errors.UnsupportedCapability,
  Producer.Producer | Broker.Broker | Scope.Scope
> = Scheduler.run({
  name: "daily-digest",
  timing: { cron: Jobs.digestCron, timeZone: Jobs.digestTimeZone },
  job: Jobs.SendDailyDigest,
  payload: (tick) => ({ day: new Date(tick).toISOString().slice(0, 10) })
})
