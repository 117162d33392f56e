/**
 * Recurring jobs: cron (Effect's `Cron`, with a time zone) and fixed intervals. Every instance
 * computes the same tick times, and each tick enqueues with a tick-scoped idempotency key, so N
 * scheduler instances running at once enqueue exactly one job per tick (through the broker's
 * deduplication, or the `IdempotencyStore` where the broker has none).
 *
 * Ticks missed while no scheduler ran are skipped, not replayed.
 *
 * @since 0.1.0
 */
import { Clock, Cron, Duration, Effect, Result, Schedule, type Scope } from "effect"
import { Broker } from "./Broker.js"
import {
  type EncodeError,
  InvalidOption,
  type InvalidQueueName,
  type PayloadTooLarge,
  UnsupportedCapability
} from "./Errors.js"
import { IdempotencyStore } from "./Idempotency.js"
import type * as Job from "./Job.js"
import { Producer } from "./Producer.js"
import { type EnqueueOptions, prepare } from "./internal/prepare.js"
import * as validate from "./internal/validate.js"

/**
 * When a schedule ticks.
 *
 * @since 0.1.0
 */
export type Timing =
  | { readonly cron: string; readonly timeZone?: string | undefined }
  | { readonly every: Duration.Input }

/**
 * A recurring job.
 *
 * @since 0.1.0
 */
export interface Options<A, I> {
  /** Unique per schedule: it scopes the tick keys. */
  readonly name: string
  readonly timing: Timing
  readonly job: Job.Job<string, A, I>
  /** The payload, or a function of the tick time (epoch ms). */
  readonly payload: A | ((tick: number) => A)
  readonly options?: Omit<EnqueueOptions, "idempotencyKey" | "id" | "delay"> | undefined
}

/**
 * The tick key for a schedule and tick time. Exposed so tests and tools can find a tick's job.
 *
 * @since 0.1.0
 */
export const tickKey = (name: string, tick: number): string => `schedule:${name}:${tick}`

/**
 * Compute the next tick strictly after `now`.
 *
 * @since 0.1.0
 */
export const makeNext = (timing: Timing): Effect.Effect<(now: number) => number, InvalidOption> =>
  Effect.gen(function* () {
    if ("cron" in timing) {
      const parsed = Cron.parse(timing.cron, timing.timeZone)
      if (Result.isFailure(parsed)) {
        return yield* validate.fail(
          "timing.cron",
          `${parsed.failure.message}: ${JSON.stringify(timing.cron)}${timing.timeZone ? ` (${timing.timeZone})` : ""}`
        )
      }
      const cron = parsed.success
      // Cron.next throws for specs that never match (Feb 30): NaN, reported by `run` as InvalidOption
      return (now: number) => {
        try {
          return Cron.next(cron, new Date(now)).getTime()
        } catch {
          return Number.NaN
        }
      }
    }
    const every = yield* validate.duration("timing.every", timing.every, 0)
    if (every < 1) return yield* validate.fail("timing.every", "must be at least 1 millisecond")
    // aligned to the epoch, so every instance agrees on the tick times
    return (now: number) => (Math.floor(now / every) + 1) * every
  })

/**
 * Run a schedule in the current scope, enqueueing one job per tick until the scope closes.
 *
 * @example
 * ```ts
 * yield* Scheduler.run({
 *   name: "daily-digest",
 *   timing: { cron: "0 9 * * *", timeZone: "Europe/London" },
 *   job: DailyDigest,
 *   payload: (tick) => ({ day: new Date(tick).toISOString().slice(0, 10) })
 * })
 * ```
 *
 * @since 0.1.0
 */
export const run = <A, I>(
  options: Options<A, I>
): Effect.Effect<
  void,
  InvalidOption | InvalidQueueName | EncodeError | PayloadTooLarge | UnsupportedCapability,
  Producer | Broker | Scope.Scope
> =>
  Effect.gen(function* () {
    const producer = yield* Producer
    const payloadAt = (tick: number): Effect.Effect<A, InvalidOption> =>
      typeof options.payload === "function"
        ? Effect.try({
            try: () => (options.payload as (tick: number) => A)(tick),
            catch: (error) =>
              new InvalidOption({
                option: "payload",
                reason: `the payload function threw: ${String(error)}`.slice(0, 500)
              })
          })
        : Effect.succeed(options.payload)
    const name = yield* validate.key("name", options.name, 200)
    if (name === undefined) return yield* validate.fail("name", "is required")
    const next = yield* makeNext(options.timing)
    // Fail now, typed, rather than log an error at every tick: the first tick's job must be valid
    // and the broker (or a store) must be able to deduplicate tick keys.
    const broker = yield* Broker
    const firstTick = next(yield* Clock.currentTimeMillis)
    if (!Number.isFinite(firstTick)) return yield* validate.fail("timing", "never ticks (no date matches it)")
    const payloadOfFirst = yield* payloadAt(firstTick)
    yield* prepare(broker, options.job, payloadOfFirst, {
      ...options.options,
      idempotencyKey: tickKey(name, firstTick)
    })
    if (!broker.capabilities.deduplication && (yield* Effect.serviceOption(IdempotencyStore))._tag === "None") {
      return yield* new UnsupportedCapability({
        broker: broker.name,
        capability: "deduplication",
        message: `schedule "${name}": broker "${broker.name}" cannot deduplicate tick keys; provide an IdempotencyStore so that N instances enqueue one job per tick`
      })
    }
    const tickOnce = (tick: number) =>
      payloadAt(tick).pipe(
        Effect.flatMap((payload) =>
          producer.enqueue(options.job, payload, { ...options.options, idempotencyKey: tickKey(name, tick) })
        ),
        Effect.retry({
          while: (error) => error._tag === "BrokerError",
          schedule: Schedule.exponential("200 millis").pipe(Schedule.upTo({ times: 3 }))
        }),
        Effect.tap((result) =>
          result.duplicate
            ? Effect.void
            : Effect.logDebug(`errand: schedule "${name}" enqueued tick ${new Date(tick).toISOString()}`)
        ),
        Effect.catch((error) =>
          Effect.logError(`errand: schedule "${name}" could not enqueue tick ${new Date(tick).toISOString()}`, error)
        )
      )
    const loop = Effect.gen(function* () {
      let now = yield* Clock.currentTimeMillis
      let tick = next(now)
      while (true) {
        now = yield* Clock.currentTimeMillis
        if (tick > now) yield* Effect.sleep(Duration.millis(tick - now))
        yield* tickOnce(tick)
        now = yield* Clock.currentTimeMillis
        tick = next(Math.max(now, tick))
        if (!Number.isFinite(tick)) {
          return yield* Effect.logError(`errand: schedule "${name}" has no further tick; it stops`)
        }
      }
    })
    yield* Effect.forkScoped(loop)
  })
