/**
 * Job definitions: a name, the queue it goes to, a payload `Schema`, and defaults for attempts,
 * backoff, timeout and priority. The payload type flows from `make` through `Producer.enqueue`
 * to the handler.
 *
 * @since 0.1.0
 */
import { Duration, Schedule, type Schema } from "effect"

/**
 * The default retry policy: exponential from 1 second, jittered, capped at 5 minutes.
 *
 * @since 0.1.0
 */
export const defaultBackoff: Schedule.Schedule<unknown> = Schedule.min([
  Schedule.exponential("1 second"),
  Schedule.spaced("5 minutes")
]).pipe(Schedule.jittered)

/**
 * Default number of attempts (the first run included).
 *
 * @since 0.1.0
 */
export const defaultAttempts = 5

/**
 * A job definition.
 *
 * @since 0.1.0
 */
export interface Job<Name extends string = string, A = any, I = any> {
  readonly _tag: "Job"
  readonly name: Name
  readonly queue: string
  readonly payload: Schema.Codec<A, I>
  /** Attempts in all, the first run included. */
  readonly attempts: number
  /**
   * Delay before each retry. The schedule is replayed from the attempt number (its input is the
   * attempt that just failed, 1-based), so delays keep growing across processes.
   */
  readonly backoff: Schedule.Schedule<unknown, number>
  /** Handler timeout in milliseconds, if any. */
  readonly timeout: number | undefined
  /** 0 to 9, higher first (where the broker has priorities). */
  readonly priority: number
}

/**
 * Any job definition.
 *
 * @since 0.1.0
 */
export type Any = Job<string, any, any>

/**
 * The payload type of a job.
 *
 * @since 0.1.0
 */
export type Payload<J> = J extends Job<string, infer A, any> ? A : never

/**
 * Define a job. Options are validated when the job is first enqueued or handled, and a bad one
 * fails there with `InvalidOption`.
 *
 * @example
 * ```ts
 * import { Job } from "@errand/core"
 * import { Schema } from "effect"
 *
 * export const SendWelcomeEmail = Job.make("send-welcome-email", {
 *   queue: "emails",
 *   payload: Schema.Struct({ userId: Schema.String }),
 *   attempts: 5
 * })
 * ```
 *
 * @since 0.1.0
 */
export const make = <const Name extends string, A, I>(
  name: Name,
  options: {
    readonly queue: string
    readonly payload: Schema.Codec<A, I>
    readonly attempts?: number | undefined
    readonly backoff?: Schedule.Schedule<unknown, number> | undefined
    readonly timeout?: Duration.Input | undefined
    readonly priority?: number | undefined
  }
): Job<Name, A, I> => ({
  _tag: "Job",
  name,
  queue: options.queue,
  payload: options.payload,
  attempts: options.attempts ?? defaultAttempts,
  backoff: options.backoff ?? defaultBackoff,
  timeout: options.timeout === undefined ? undefined : toMillisOrNaN(options.timeout),
  priority: options.priority ?? 0
})

const toMillisOrNaN = (input: Duration.Input): number => {
  try {
    return Duration.toMillis(Duration.fromInputUnsafe(input))
  } catch {
    return Number.NaN
  }
}
