/**
 * The producer: validate and encode a job, check its size before any I/O, deduplicate by
 * idempotency key, and send it. `enqueue` returns only once the broker has confirmed the job.
 *
 * @since 0.1.0
 */
import { Context, Effect, Exit, Layer, Metric, type Scope } from "effect"
import { Broker, type BrokerShape, type SendResult } from "./Broker.js"
import { DuplicateJob, type EnqueueError, UnsupportedCapability } from "./Errors.js"
import { IdempotencyStore, type IdempotencyStoreShape } from "./Idempotency.js"
import type * as Job from "./Job.js"
import * as Metrics from "./Metrics.js"
import { makeCoalescer } from "./internal/coalesce.js"
import { traced } from "./internal/tracing.js"
import { type EnqueueOptions, prepare, type Prepared } from "./internal/prepare.js"

export type { EnqueueOptions } from "./internal/prepare.js"

/**
 * What `enqueue` answers.
 *
 * @since 0.1.0
 */
export interface EnqueueResult {
  readonly id: string
  /** True when a job with the same idempotency key (or id) was already accepted; nothing new was sent. */
  readonly duplicate: boolean
}

/**
 * How long an emulated enqueue deduplication (brokers without native dedup) remembers a key.
 *
 * @since 0.1.0
 */
export const deduplicationWindow = 24 * 60 * 60 * 1000

/** How long an emulated-dedup claim holds a key while its job is being sent. */
const claimTtl = 60_000

/**
 * The producer service.
 *
 * @since 0.1.0
 */
export class Producer extends Context.Service<
  Producer,
  {
    /** Enqueue one job. */
    readonly enqueue: <A, I>(
      job: Job.Job<string, A, I>,
      payload: A,
      options?: EnqueueOptions
    ) => Effect.Effect<EnqueueResult, EnqueueError>
    /** Enqueue many jobs of one kind in one broker call; all are validated before anything is sent. */
    readonly enqueueBatch: <A, I>(
      job: Job.Job<string, A, I>,
      items: ReadonlyArray<{ readonly payload: A; readonly options?: EnqueueOptions | undefined }>
    ) => Effect.Effect<ReadonlyArray<EnqueueResult>, EnqueueError>
  }
>()("@errand/core/Producer") {}

const answer = (result: SendResult): Effect.Effect<EnqueueResult, DuplicateJob> =>
  result.duplicate && (result.existingState === "failed" || result.existingState === "dead")
    ? Effect.fail(new DuplicateJob({ id: result.id, state: result.existingState }))
    : Effect.succeed({ id: result.id, duplicate: result.duplicate })

/**
 * Build a producer on a broker. Deduplication uses the broker's own where it has one, else the
 * `IdempotencyStore` in context (fails with `UnsupportedCapability` when there is none).
 * Concurrent single enqueues are coalesced into batch sends; each still returns only once its own
 * job is confirmed.
 *
 * @since 0.1.0
 */
export const make = Effect.fnUntraced(function* (
  broker: BrokerShape,
  store: IdempotencyStoreShape | undefined
): Effect.fn.Return<Producer["Service"], never, Scope.Scope> {
  const native = broker.capabilities.deduplication
  const sendOne = yield* makeCoalescer(broker)

  const sendPrepared = (
    queue: string,
    jobName: string,
    prepared: ReadonlyArray<Prepared>
  ): Effect.Effect<ReadonlyArray<EnqueueResult>, EnqueueError> =>
    Effect.suspend(() => {
      // Emulated dedup: claim each key (briefly) first; only claimed (or keyless) jobs are sent, and
      // a claim becomes the 24 h dedup record only once its job is confirmed. Whatever goes wrong
      // before that (store down, send failed, interrupted) releases the claims taken so far.
      const held = new Map<string, string>()
      const keyOf = (item: Prepared) => `errand:enqueue:${queue}:${item.idempotencyKey}`
      return Effect.gen(function* () {
        const claims: Array<string | undefined> = []
        const toSend: Array<Prepared> = []
        const results: Array<EnqueueResult | undefined> = []
        for (const item of prepared) {
          if (item.idempotencyKey === undefined || native) {
            claims.push(undefined)
            toSend.push(item)
            results.push(undefined)
            continue
          }
          if (store === undefined) {
            return yield* new UnsupportedCapability({
              broker: broker.name,
              capability: "deduplication",
              message: `broker "${broker.name}" has no native deduplication: provide an IdempotencyStore to enqueue with an idempotencyKey`
            })
          }
          const claim = yield* store.claim(keyOf(item), claimTtl)
          if (claim._tag === "claimed") {
            held.set(keyOf(item), claim.token)
            claims.push(claim.token)
            toSend.push(item)
            results.push(undefined)
          } else {
            results.push({ id: item.message.id, duplicate: true })
          }
        }
        const sent =
          toSend.length === 0
            ? []
            : yield* toSend.length === 1
                ? Effect.map(sendOne(queue, toSend[0]!.message), (result) => [result])
                : broker.send(
                    queue,
                    toSend.map((p) => p.message)
                  )
        let j = 0
        const out: Array<EnqueueResult> = []
        for (let i = 0; i < results.length; i++) {
          const existing = results[i]
          if (existing !== undefined) {
            out.push(existing)
            continue
          }
          const item = toSend[j]!
          const token = claims[j]
          const result = sent[j]!
          j++
          if (token !== undefined && store) {
            yield* Effect.ignore(store.complete(keyOf(item), token, deduplicationWindow))
            held.delete(keyOf(item))
          }
          out.push(yield* answer(result))
        }
        const fresh = out.filter((r) => !r.duplicate).length
        if (fresh > 0) yield* Metric.update(Metrics.tagged(queue, jobName).enqueued, fresh)
        return out
      }).pipe(
        Effect.onExit((exit) =>
          Exit.isSuccess(exit) || store === undefined || held.size === 0
            ? Effect.void
            : Effect.forEach(held, ([key, token]) => Effect.ignore(store.release(key, token)), { discard: true })
        )
      )
    })

  return Producer.of({
    enqueue: (job, payload, options) =>
      traced(
        Effect.flatMap(prepare(broker, job, payload, options), (prepared) =>
          prepared.idempotencyKey !== undefined && !native
            ? Effect.map(sendPrepared(job.queue, job.name, [prepared]), (results) => results[0]!)
            : // the common case, kept short: it runs once per job
              Effect.flatMap(sendOne(job.queue, prepared.message), (result) =>
                Effect.withFiber((fiber) => {
                  if (!result.duplicate) Metrics.tagged(job.queue, job.name).enqueued.updateUnsafe(1, fiber.context)
                  return answer(result)
                })
              )
        ),
        "errand.enqueue",
        { kind: "producer", attributes: { "errand.queue": job.queue, "errand.job": job.name } }
      ),
    enqueueBatch: (job, items) =>
      traced(
        Effect.forEach(items, (item) => prepare(broker, job, item.payload, item.options)).pipe(
          Effect.flatMap((prepared) => sendPrepared(job.queue, job.name, prepared))
        ),
        "errand.enqueueBatch",
        {
          kind: "producer",
          attributes: { "errand.queue": job.queue, "errand.job": job.name, "errand.count": items.length }
        }
      )
  })
})

/**
 * The producer layer, on the `Broker` in context (and the `IdempotencyStore`, if any).
 *
 * @since 0.1.0
 */
export const layer: Layer.Layer<Producer, never, Broker> = Layer.effect(
  Producer,
  Effect.gen(function* () {
    const broker = yield* Broker
    const store = yield* Effect.serviceOption(IdempotencyStore)
    return yield* make(broker, store._tag === "Some" ? store.value : undefined)
  })
)

/**
 * Enqueue one job with the `Producer` in context.
 *
 * @example
 * ```ts
 * const result = yield* Producer.enqueue(SendWelcomeEmail, { userId: "u1" }, { idempotencyKey: "welcome:u1" })
 * ```
 *
 * @since 0.1.0
 */
export const enqueue = <A, I>(
  job: Job.Job<string, A, I>,
  payload: A,
  options?: EnqueueOptions
): Effect.Effect<EnqueueResult, EnqueueError, Producer> =>
  Producer.use((producer) => producer.enqueue(job, payload, options))

/**
 * Enqueue many jobs of one kind with the `Producer` in context.
 *
 * @since 0.1.0
 */
export const enqueueBatch = <A, I>(
  job: Job.Job<string, A, I>,
  items: ReadonlyArray<{ readonly payload: A; readonly options?: EnqueueOptions | undefined }>
): Effect.Effect<ReadonlyArray<EnqueueResult>, EnqueueError, Producer> =>
  Producer.use((producer) => producer.enqueueBatch(job, items))
