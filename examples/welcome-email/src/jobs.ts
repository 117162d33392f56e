/**
 * The jobs of the welcome-email service. All three live on one queue, `emails`, so one worker
 * serves them.
 *
 * @since 0.0.0
 */
import { Job } from "@errand/core"
import { Schedule, Schema } from "effect"

/**
 * The queue every job of this service goes to.
 *
 * @since 0.0.0
 */
export const queue = "emails"

/**
 * Attempts per job, the first run included.
 *
 * @since 0.0.0
 */
export const attempts = 5

/**
 * Delay before each retry: 1 s, 2 s, 4 s, 8 s. Not jittered, so the demo's timeline is exact;
 * a fleet of workers retrying a shared outage would want `Schedule.jittered` on top.
 *
 * @since 0.0.0
 */
export const backoff = Schedule.exponential("1 second")

/**
 * How long after the welcome email the reminder goes out.
 *
 * @since 0.0.0
 */
export const reminderDelay = "1 hour"

/**
 * When the daily digest runs: every day at 09:00 in `digestTimeZone`.
 *
 * @since 0.0.0
 */
export const digestCron = "0 9 * * *"

/**
 * The time zone of `digestCron` (fixed, so the schedule does not follow the host's zone).
 *
 * @since 0.0.0
 */
export const digestTimeZone = "UTC"

/**
 * A user id as the API accepts it: a non-empty string of at most 200 characters.
 *
 * @since 0.0.0
 */
export const UserId = Schema.String.check(Schema.isNonEmpty(), Schema.isMaxLength(200))

/**
 * Send the welcome email to a user. Enqueued by `POST /api/welcome-email` with the idempotency
 * key `welcome:<userId>`.
 *
 * @since 0.0.0
 */
export const SendWelcomeEmail = Job.make("send-welcome-email", {
  queue,
  payload: Schema.Struct({ userId: UserId }),
  attempts,
  backoff
})

/**
 * Send the follow-up reminder, enqueued with a one-hour delay once the welcome email is out.
 *
 * @since 0.0.0
 */
export const SendReminderEmail = Job.make("send-reminder-email", {
  queue,
  payload: Schema.Struct({ userId: UserId }),
  attempts,
  backoff
})

/**
 * Send the daily digest for `day` (YYYY-MM-DD), enqueued by the scheduler at 09:00.
 *
 * @since 0.0.0
 */
export const SendDailyDigest = Job.make("send-daily-digest", {
  queue,
  payload: Schema.Struct({ day: Schema.String }),
  attempts,
  backoff
})

/**
 * The idempotency key of a user's welcome email.
 *
 * @since 0.0.0
 */
export const welcomeKey = (userId: string): string => `welcome:${userId}`

/**
 * The idempotency key of a user's reminder.
 *
 * @since 0.0.0
 */
export const reminderKey = (userId: string): string => `reminder:${userId}`
