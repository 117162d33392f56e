/**
 * The worker: pulls deliveries with a concurrency bound that is never exceeded, runs the typed
 * handler for each job, and settles every delivery exactly once — ack, retry with the job's
 * backoff, dead-letter, or release on shutdown.
 *
 * Outcomes: success → ack. `Unrecoverable` → DLQ now. `RetryAfter` → retry after its delay.
 * Any other failure, defect or timeout → retry with backoff, or DLQ once attempts run out.
 * A body that does not decode (not JSON, unknown envelope version, unknown job, payload failing
 * its schema) → DLQ now with the reason; the worker keeps running.
 *
 * Graceful shutdown: when the worker's scope closes it stops taking deliveries, lets in-flight
 * handlers finish within `gracePeriod`, then releases the rest without counting an attempt.
 *
 * @since 0.1.0
 */
import {
  Cause,
  Clock,
  Duration,
  Effect,
  Fiber,
  FiberSet,
  Latch,
  Layer,
  Metric,
  Option,
  Result,
  Schema,
  type Scope,
  Tracer
} from "effect"
import * as RateLimiter from "effect/persistence/RateLimiter"
import { Broker, type DeadLetterReason, type Delivery } from "./Broker.js"
import * as Envelope from "./Envelope.js"
import { type BrokerError, DecodeError, type InvalidOption, type InvalidQueueName } from "./Errors.js"
import { IdempotencyStore, type IdempotencyStoreShape } from "./Idempotency.js"
import type * as Job from "./Job.js"
import * as Metrics from "./Metrics.js"
import { retryDelay } from "./internal/backoff.js"
import { externalParent, limitOf, validateQueue } from "./internal/prepare.js"
import * as validate from "./internal/validate.js"

/**
 * Fail a handler with this to send the job to the DLQ at once, without retries.
 *
 * @since 0.1.0
 */
export class Unrecoverable extends Schema.TaggedError<Unrecoverable>()("Unrecoverable", {
  message: Schema.String
}) {}

/**
 * Fail a handler with this to retry after `delay` milliseconds instead of the job's backoff. The
 * attempt still counts, so a job cannot retry forever.
 *
 * @since 0.1.0
 */
export class RetryAfter extends Schema.TaggedError<RetryAfter>()("RetryAfter", {
  delay: Schema.Number,
  message: Schema.optionalKey(Schema.String)
}) {
  /** Build from any duration input: `RetryAfter.of("30 seconds")`. */
  static of(delay: Duration.Input, message?: string): RetryAfter {
    return new RetryAfter({
      delay: Duration.toMillis(Duration.fromInputUnsafe(delay)),
      ...(message ? { message } : {})
    })
  }
}

/**
 * What a handler knows about the job it runs.
 *
 * @since 0.1.0
 */
export interface JobContext {
  readonly id: string
  readonly job: string
  readonly queue: string
  /** 1-based: this is attempt `attempt` of `maxAttempts`. */
  readonly attempt: number
  readonly maxAttempts: number
  readonly enqueuedAt: number
  readonly priority: number
  readonly idempotencyKey: string | undefined
  readonly group: string | undefined
}

/**
 * A handler for one job definition.
 *
 * @since 0.1.0
 */
export interface Handler<R = never> {
  readonly job: Job.Any
  readonly run: (payload: any, context: JobContext) => Effect.Effect<unknown, unknown, R>
}

/**
 * Pair a job definition with its handler; the payload is typed from the job's schema.
 *
 * @example
 * ```ts
 * const sendWelcome = Worker.handler(SendWelcomeEmail, ({ userId }, ctx) =>
 *   Mailer.use((m) => m.send(userId)).pipe(Effect.asVoid))
 * ```
 *
 * @since 0.1.0
 */
export const handler = <J extends Job.Any, R>(
  job: J,
  run: (payload: Job.Payload<J>, context: JobContext) => Effect.Effect<unknown, unknown, R>
): Handler<R> => ({ job, run })

/**
 * Worker options.
 *
 * @since 0.1.0
 */
export interface Options<R> {
  readonly queue: string
  readonly handlers: ReadonlyArray<Handler<R>>
  /** Handlers running at once, never exceeded. Default 10. */
  readonly concurrency?: number | undefined
  /** At most `limit` handler starts per `window`, through effect's `RateLimiter` (a shared store makes it global). */
  readonly rateLimit?: { readonly limit: number; readonly window: Duration.Input } | undefined
  /** Lease taken on each delivery; extended while the handler runs where the broker can. Default 30 s. */
  readonly lease?: Duration.Input | undefined
  /** How long in-flight handlers may run on after shutdown starts. Default 10 s. */
  readonly gracePeriod?: Duration.Input | undefined
  /** Longest wait in one `take`; bounds how fast shutdown notices. Default 1 s. */
  readonly pollWait?: Duration.Input | undefined
  /**
   * Guard handlers with the `IdempotencyStore` in context: a delivery whose key (idempotency key,
   * else job id) was already completed is acked without running. `ttl`: how long completion is
   * remembered (default 24 h).
   */
  readonly idempotency?: boolean | { readonly ttl?: Duration.Input | undefined } | undefined
}

/**
 * A running worker.
 *
 * @since 0.1.0
 */
export interface Worker {
  readonly queue: string
  /** Handlers running now. */
  readonly inFlight: Effect.Effect<number>
  /** Stop taking work, finish or release in-flight jobs (the same as closing the worker's scope). */
  readonly shutdown: Effect.Effect<void>
}

const errorText = (cause: Cause.Cause<unknown>): string => {
  try {
    return describeError(Cause.squash(cause)).slice(0, 2000)
  } catch {
    return "(an error that cannot be turned into text)"
  }
}

const describeError = (error: unknown): string => {
  let text: string
  if (error instanceof Error) {
    const tag = (error as { _tag?: unknown })._tag
    text =
      typeof tag === "string" && tag !== error.message ? `${tag}: ${error.message}` : `${error.name}: ${error.message}`
  } else if (typeof error === "object" && error !== null && "_tag" in error) {
    text = `${String((error as { _tag: unknown })._tag)}${"message" in error ? `: ${String((error as { message: unknown }).message)}` : ""}`
  } else {
    text = String(error)
  }
  return text
}

/** Longest retry backoff honoured (30 days): an unbounded schedule must not overflow `notBefore`. */
const maxRetryDelay = 30 * 24 * 60 * 60 * 1000

const logSettleFailure = (operation: string, delivery: Delivery) => (error: BrokerError) =>
  Effect.logWarning(`errand: ${operation} failed for ${delivery.id}; the broker will redeliver it`, error.message)

/**
 * Start a worker in the current scope. It runs until the scope closes (then shuts down
 * gracefully) or `shutdown` is called.
 *
 * @example
 * ```ts
 * yield* Worker.run({ queue: "emails", handlers: [sendWelcome], concurrency: 20 })
 * ```
 *
 * @since 0.1.0
 */
export const run = Effect.fnUntraced(function* <R>(
  options: Options<R>
): Effect.fn.Return<Worker, InvalidOption | InvalidQueueName, Broker | Scope.Scope | R> {
  const broker = yield* Broker
  const queue = yield* validateQueue(broker, options.queue)
  const concurrency = yield* validate.integer("concurrency", options.concurrency, 10, 1, 100_000)
  const lease = yield* validate.duration("lease", options.lease, 30_000)
  if (lease < 1000) return yield* validate.fail("lease", "must be at least 1 second")
  const grace = yield* validate.duration("gracePeriod", options.gracePeriod, 10_000)
  const pollWait = yield* validate.duration("pollWait", options.pollWait, 1_000)
  const rate = options.rateLimit
  if (rate !== undefined) {
    yield* validate.integer("rateLimit.limit", rate.limit, 1, 1, Number.MAX_SAFE_INTEGER)
    const window = yield* validate.duration("rateLimit.window", rate.window, 0)
    if (window <= 0) return yield* validate.fail("rateLimit.window", "must be positive")
  }
  // Spans only when a tracing backend is installed (see internal/tracing.ts); handler fibers run
  // in this fiber's context, so one look is enough.
  const tracing =
    (yield* Effect.withFiber((fiber) => Effect.succeed(fiber.getRef(Tracer.Tracer)))) !== Tracer.nativeTracer
  // per job name: its handler, payload decoder and tagged metrics, looked up once per delivery
  const handlers = new Map<
    string,
    {
      readonly run: Handler<R>["run"]
      readonly backoff: Job.Any["backoff"]
      readonly decode: (input: unknown) => Result.Result<unknown, Schema.SchemaError>
      readonly metrics: ReturnType<typeof Metrics.tagged>
    }
  >()
  for (const h of options.handlers) {
    if (h.job.queue !== queue)
      return yield* validate.fail("handlers", `job "${h.job.name}" belongs to queue "${h.job.queue}", not "${queue}"`)
    if (handlers.has(h.job.name)) return yield* validate.fail("handlers", `two handlers for job "${h.job.name}"`)
    yield* validate.integer(`${h.job.name}.attempts`, h.job.attempts, 1, 1, 1000)
    yield* validate.integer(`${h.job.name}.priority`, h.job.priority, 0, 0, 9)
    if (h.job.timeout !== undefined) yield* validate.duration(`${h.job.name}.timeout`, h.job.timeout, 0)
    handlers.set(h.job.name, {
      run: h.run,
      backoff: h.job.backoff,
      decode: Schema.decodeUnknownResult(h.job.payload),
      metrics: Metrics.tagged(queue, h.job.name)
    })
  }
  let store: IdempotencyStoreShape | undefined
  if (options.idempotency) {
    const found = yield* Effect.serviceOption(IdempotencyStore)
    if (Option.isNone(found)) return yield* validate.fail("idempotency", "needs an IdempotencyStore in context")
    store = found.value
  }
  const doneTtl =
    typeof options.idempotency === "object"
      ? yield* validate.duration("idempotency.ttl", options.idempotency.ttl, 86_400_000)
      : 86_400_000
  const limiter =
    rate === undefined
      ? undefined
      : (Option.getOrUndefined(yield* Effect.serviceOption(RateLimiter.RateLimiter)) ??
        (yield* RateLimiter.make.pipe(Effect.provide(RateLimiter.layerStoreMemory))))

  const limit = limitOf(broker)
  const canExtend = broker.capabilities.leaseExtension
  if (!canExtend) {
    const unbounded = options.handlers.filter((h) => h.job.timeout === undefined || h.job.timeout > lease)
    if (unbounded.length > 0) {
      yield* Effect.logWarning(
        `errand: broker "${broker.name}" cannot extend leases; on "${queue}" a handler running longer than the ${lease} ms lease may be delivered again (${unbounded.map((h) => h.job.name).join(", ")}): set a job timeout below the lease, or a longer lease`
      )
    }
  }
  const maxDelay = broker.capabilities.maxDelay
  // Brokers that cannot delay a send at all (SQS FIFO) can still delay a redelivery; see Broker.ts.
  const hopLimit = Math.min(maxDelay > 0 ? maxDelay : maxRetryDelay, maxRetryDelay)

  const fibers = yield* FiberSet.make<void, never>()
  // One keeper renews the leases (and idempotency claims) of every running handler, rather than a
  // fiber per job. A claim lives about as long as a lease, so a dead worker's claim lapses about
  // when the broker redelivers its job.
  const claimTtl = lease * 2
  const running = new Map<Delivery, { readonly key: string; readonly token: string } | undefined>()
  if (canExtend || store !== undefined) {
    const renew = (delivery: Delivery, claim: { readonly key: string; readonly token: string } | undefined) =>
      Effect.andThen(
        canExtend ? Effect.ignore(delivery.extendLease(lease)) : Effect.void,
        claim !== undefined && store !== undefined
          ? Effect.ignore(store.extend(claim.key, claim.token, claimTtl))
          : Effect.void
      )
    yield* Effect.forkScoped(
      Effect.forever(
        Effect.andThen(
          Effect.sleep(Math.max(250, Math.floor(lease / 3))),
          Effect.suspend(() =>
            running.size === 0
              ? Effect.void
              : Effect.forEach(Array.from(running), ([delivery, claim]) => renew(delivery, claim), {
                  concurrency: 16,
                  discard: true
                })
          )
        )
      )
    )
  }
  const slotFreed = yield* Latch.make(false)
  let active = 0
  let stopping = false

  // a settle runs to its end once started (adapters bound it with their own timeouts): cutting an
  // ack short could leave the broker and the adapter disagreeing about the delivery
  const settle = (operation: string, delivery: Delivery, effect: Effect.Effect<void, BrokerError>) =>
    Effect.uninterruptible(Effect.catch(effect, logSettleFailure(operation, delivery)))

  const deadLetter = (delivery: Delivery, reason: DeadLetterReason, error: string, attempts: number, jobName: string) =>
    Effect.flatMap(Clock.currentTimeMillis, (now) =>
      settle(
        "deadLetter",
        delivery,
        delivery.deadLetter({ body: delivery.body, reason, error, attempts, failedAt: now })
      ).pipe(
        Effect.andThen(Metric.update(Metrics.tagged(queue, jobName).deadLettered, 1)),
        Effect.andThen(
          Effect.logWarning(`errand: job ${delivery.id} on "${queue}" dead-lettered (${reason}): ${error}`)
        )
      )
    )

  const retryLater = (delivery: Delivery, envelope: Envelope.Envelope, delay: number, now: number) => {
    const body = Envelope.encode({
      ...envelope,
      attempts: envelope.attempts + 1,
      ...(delay > maxDelay ? { notBefore: now + delay } : {})
    })
    return settle("retry", delivery, delivery.retry({ body, delay: Math.min(delay, hopLimit) }))
  }

  type Registered = typeof handlers extends Map<string, infer V> ? V : never
  type Restore = <A, E, R2>(effect: Effect.Effect<A, E, R2>) => Effect.Effect<A, E, R2>
  type Claim = { readonly key: string; readonly token: string }

  /**
   * Claim the job in the idempotency store (when there is one), then run it. Runs inside
   * `processDelivery`'s uninterruptible region: only `restore`d steps can be interrupted.
   */
  const runJob = (
    restore: Restore,
    delivery: Delivery,
    envelope: Envelope.Envelope,
    h: Registered,
    payload: unknown,
    free: () => void
  ): Effect.Effect<void> => {
    if (store === undefined) return runClaimed(restore, delivery, envelope, h, payload, free, undefined)
    const s = store
    const key = `errand:job:${queue}:${envelope.idempotencyKey ?? envelope.id}`
    const later = () =>
      settle("retry", delivery, delivery.retry({ body: delivery.body, delay: Math.min(1000, hopLimit) }))
    return Effect.flatMap(Effect.exit(restore(s.claim(key, claimTtl))), (claimed) => {
      if (claimed._tag === "Failure") {
        // shutdown while claiming gives the job back; a store failure looks again later
        if (Cause.hasInterruptsOnly(claimed.cause)) return settle("release", delivery, delivery.release)
        return Effect.andThen(
          Effect.logWarning("errand: idempotency store unavailable; retrying later", errorText(claimed.cause)),
          later()
        )
      }
      const state = claimed.value
      if (state._tag === "done") return settle("ack", delivery, delivery.ack)
      // another worker holds this job right now: look again later without counting an attempt
      if (state._tag === "busy") return later()
      return runClaimed(restore, delivery, envelope, h, payload, free, { key, token: state.token })
    })
  }

  /**
   * Run the handler and settle its outcome. Built from plain combinators rather than a generator:
   * this runs once per job and is most of core's cost per job.
   */
  const runClaimed = (
    restore: Restore,
    delivery: Delivery,
    envelope: Envelope.Envelope,
    h: Registered,
    payload: unknown,
    free: () => void,
    claim: Claim | undefined
  ): Effect.Effect<void> =>
    Effect.withFiber((fiber) => {
      const clock = fiber.getRef(Clock.Clock)
      const metrics = h.metrics
      const attempt = envelope.attempts + 1
      const start = clock.currentTimeMillisUnsafe()
      metrics.started.updateUnsafe(1, fiber.context)
      metrics.queueWait.updateUnsafe(Math.max(0, start - (envelope.notBefore ?? envelope.enqueuedAt)), fiber.context)
      const ctx: JobContext = {
        id: envelope.id,
        job: envelope.job,
        queue,
        attempt,
        maxAttempts: envelope.maxAttempts,
        enqueuedAt: envelope.enqueuedAt,
        priority: envelope.priority,
        idempotencyKey: envelope.idempotencyKey,
        group: envelope.group
      }
      // handler fibers are forked from the worker's loop, which runs with the caller's context,
      // so `R` is in scope already (providing it again per job costs a context merge)
      let handlerEffect = Effect.suspend(() => h.run(payload, ctx)) as Effect.Effect<unknown, unknown>
      if (envelope.timeout !== undefined && envelope.timeout > 0)
        handlerEffect = Effect.timeout(handlerEffect, envelope.timeout)
      if (tracing) {
        const parent = externalParent(envelope)
        handlerEffect = Effect.withSpan(handlerEffect, `errand.process ${envelope.job}`, {
          kind: "consumer",
          attributes: {
            "errand.queue": queue,
            "errand.job": envelope.job,
            "errand.id": envelope.id,
            "errand.attempt": attempt
          },
          ...(parent ? { links: [{ span: parent, attributes: {} }] } : {}),
          captureStackTrace: false
        })
      }
      running.set(delivery, claim)
      // Everything after the handler is settled to its end (this region is uninterruptible): an
      // interrupt between a successful handler and its ack would run a finished job again.
      return Effect.flatMap(Effect.exit(restore(handlerEffect)), (exit) => {
        running.delete(delivery)
        // the handler is done: its slot goes to the next job while this one settles
        free()
        const end = clock.currentTimeMillisUnsafe()
        metrics.processingTime.updateUnsafe(end - start, fiber.context)
        if (exit._tag === "Success") {
          const ack = Effect.catch(delivery.ack, logSettleFailure("ack", delivery))
          return Effect.map(
            claim !== undefined && store !== undefined
              ? Effect.andThen(Effect.ignore(store.complete(claim.key, claim.token, doneTtl)), ack)
              : ack,
            () => metrics.completed.updateUnsafe(1, fiber.context)
          )
        }
        return settleFailure(delivery, envelope, h, exit.cause, attempt, end, metrics, claim)
      })
    })

  /** A handler failed (or was cut short): release, retry with backoff, or dead-letter. */
  const settleFailure = (
    delivery: Delivery,
    envelope: Envelope.Envelope,
    h: Registered,
    cause: Cause.Cause<unknown>,
    attempt: number,
    end: number,
    metrics: ReturnType<typeof Metrics.tagged>,
    claim: Claim | undefined
  ): Effect.Effect<void> =>
    Effect.gen(function* () {
      if (claim !== undefined && store !== undefined) yield* Effect.ignore(store.release(claim.key, claim.token))
      yield* Metric.update(metrics.failed, 1)
      if (Cause.hasInterruptsOnly(cause) && stopping) {
        // shutdown cut the handler short (grace period over): give the job back, no attempt counted
        return yield* settle("release", delivery, delivery.release)
      }
      const failure = Cause.findError(cause)
      const error = failure._tag === "Success" ? failure.success : undefined
      const text = errorText(cause)
      if (error instanceof Unrecoverable) {
        return yield* deadLetter(delivery, "unrecoverable", text, attempt, envelope.job)
      }
      if (attempt >= envelope.maxAttempts) {
        return yield* deadLetter(delivery, "exhausted", text, attempt, envelope.job)
      }
      const delay =
        error instanceof RetryAfter
          ? Math.max(0, Number.isFinite(error.delay) ? error.delay : 0)
          : yield* retryDelay(h.backoff, Math.min(attempt, Envelope.maxAttempts))
      yield* Metric.update(metrics.retried, 1)
      yield* retryLater(delivery, envelope, Math.min(delay, maxRetryDelay), end)
    })

  /**
   * One delivery, from its body to its settle. Uninterruptible except for the handler and the
   * idempotency claim, so every delivery is settled exactly once: by its outcome, or released when
   * shutdown interrupts it.
   */
  const processDelivery = (delivery: Delivery, free: () => void): Effect.Effect<void> =>
    Effect.uninterruptibleMask((restore) => {
      const envelope = Envelope.parse(delivery.body, limit)
      if (envelope instanceof DecodeError) {
        return deadLetter(delivery, "undecodable", `${envelope.reason}: ${envelope.message}`, 0, "(undecodable)")
      }
      const h = handlers.get(envelope.job)
      if (h === undefined) {
        return deadLetter(
          delivery,
          "undecodable",
          `UnknownJob: no handler for job ${JSON.stringify(envelope.job.slice(0, 200))} on queue "${queue}"`,
          envelope.attempts,
          "(unknown)"
        )
      }
      const payload = h.decode(envelope.payload)
      if (Result.isFailure(payload)) {
        return deadLetter(
          delivery,
          "undecodable",
          `InvalidPayload: ${String(payload.failure.message).slice(0, 1500)}`,
          envelope.attempts,
          envelope.job
        )
      }
      const notBefore = envelope.notBefore
      if (notBefore === undefined) return runJob(restore, delivery, envelope, h, payload.success, free)
      return Effect.flatMap(Clock.currentTimeMillis, (now) =>
        notBefore > now
          ? // a delay longer than the broker's maximum: hop again with the remainder
            settle(
              "retry",
              delivery,
              delivery.retry({ body: delivery.body, delay: Math.min(notBefore - now, hopLimit) })
            )
          : runJob(restore, delivery, envelope, h, payload.success, free)
      )
    }).pipe(
      Effect.catchCause((cause) =>
        Cause.hasInterruptsOnly(cause)
          ? Effect.interrupt
          : Effect.logError("errand: worker defect while settling; the broker will redeliver", cause)
      )
    )

  /** An idempotent "this delivery's slot is free" for one delivery. */
  const slotFor = (): (() => void) => {
    let freed = false
    return () => {
      if (freed) return
      freed = true
      active--
      slotFreed.openUnsafe()
    }
  }

  let takeFailures = 0
  let inHand: ReadonlyArray<Delivery> = []
  // Handler fibers start in the caller's context (so `R` is in scope) and join the worker's set.
  const start = yield* FiberSet.runtime(fibers)<R>()

  /**
   * Start a fiber per delivery, in one synchronous step: each delivery is either started or, once
   * shutdown has begun, released. Nothing can interleave with it, so nothing is lost in between.
   */
  const handOff = (deliveries: ReadonlyArray<Delivery>): Effect.Effect<void> =>
    Effect.suspend(() => {
      let left: Array<Delivery> | undefined
      for (const delivery of deliveries) {
        if (stopping) {
          ;(left ??= []).push(delivery)
          continue
        }
        active++
        const free = slotFor()
        start(Effect.ensuring(processDelivery(delivery, free), Effect.sync(free)))
      }
      inHand = []
      return left === undefined
        ? Effect.void
        : Effect.forEach(left, (delivery) => settle("release", delivery, delivery.release), { discard: true })
    })

  const limited = limiter !== undefined && rate !== undefined
  // the token is spent only on a real start (an empty take costs none); shutdown while waiting for
  // it releases what is in hand
  const awaitToken: Effect.Effect<void> =
    limiter === undefined || rate === undefined
      ? Effect.void
      : limiter
          .consume({
            algorithm: "fixed-window",
            onExceeded: "delay",
            window: rate.window,
            limit: rate.limit,
            key: `errand:rate:${queue}`
          })
          .pipe(
            Effect.flatMap((consumed) =>
              Duration.toMillis(consumed.delay) > 0 ? Effect.sleep(consumed.delay) : Effect.void
            ),
            Effect.catch((error) => Effect.logWarning("errand: rate limiter unavailable; starting anyway", error))
          )

  /** One round of the loop: wait for a free slot, or take deliveries and start them. */
  const round: Effect.Effect<void> = Effect.suspend(() => {
    if (active >= concurrency) {
      slotFreed.closeUnsafe()
      return active >= concurrency ? slotFreed.await : Effect.void
    }
    const max = limited ? 1 : concurrency - active
    return Effect.flatMap(Clock.currentTimeMillis, (takeStarted) =>
      Effect.flatMap(
        // what a take returned is "in hand" until handed to a fiber; shutdown releases what is left
        Effect.uninterruptibleMask((restore) =>
          Effect.map(Effect.result(restore(broker.take(queue, { max, lease, wait: pollWait }))), (result) => {
            if (result._tag === "Success") inHand = result.success
            return result
          })
        ),
        (taken) => {
          if (taken._tag === "Failure") {
            takeFailures++
            const wait = Math.min(5000, 100 * 2 ** Math.min(takeFailures, 6))
            return Effect.andThen(
              Effect.logWarning(
                `errand: take from "${queue}" failed (${taken.failure.reason}); retrying in ${wait} ms`,
                taken.failure.message
              ),
              Effect.sleep(wait)
            )
          }
          takeFailures = 0
          const deliveries = taken.success
          if (deliveries.length === 0) {
            // An empty answer well before `wait` (a closed or non-blocking broker) must not turn
            // this loop into a busy spin: sit out part of the poll.
            return Effect.flatMap(Clock.currentTimeMillis, (now) => {
              const floor = Math.max(5, Math.min(pollWait, 1000) / 2)
              return now - takeStarted < floor ? Effect.sleep(floor - (now - takeStarted)) : Effect.void
            })
          }
          return limited ? Effect.andThen(awaitToken, handOff(deliveries)) : handOff(deliveries)
        }
      )
    )
  })

  const loop: Effect.Effect<void> = Effect.suspend(() => (stopping ? Effect.void : Effect.andThen(round, loop)))

  // Detached, not a child: the fiber that called `run` (a layer's builder, say) may end long
  // before the worker's scope closes, and a child would be interrupted with it. Shutdown
  // interrupts the loop itself.
  const loopFiber = yield* Effect.forkDetach(loop, { startImmediately: true })
  let shutdownDone: Effect.Effect<void> | undefined
  const shutdown = Effect.suspend(() => {
    if (shutdownDone) return shutdownDone
    stopping = true
    shutdownDone = Effect.gen(function* () {
      yield* Fiber.interrupt(loopFiber)
      const left = inHand
      inHand = []
      yield* Effect.forEach(left, (delivery) => settle("release", delivery, delivery.release), { discard: true })
      const finished = yield* Effect.timeoutOption(FiberSet.awaitEmpty(fibers), grace)
      if (Option.isNone(finished)) {
        yield* Effect.logWarning(`errand: grace period over on "${queue}"; releasing ${active} unfinished job(s)`)
        yield* FiberSet.clear(fibers)
      }
    }).pipe(Effect.uninterruptible, Effect.cached, Effect.runSync)
    return shutdownDone
  })
  yield* Effect.addFinalizer(() => shutdown)
  return {
    queue,
    inFlight: Effect.sync(() => active),
    shutdown
  } satisfies Worker
})

/**
 * A layer that runs a worker for the layer's lifetime (graceful shutdown when it is released).
 *
 * @since 0.1.0
 */
export const layer = <R>(options: Options<R>): Layer.Layer<never, InvalidOption | InvalidQueueName, Broker | R> =>
  Layer.effectDiscard(run(options))
