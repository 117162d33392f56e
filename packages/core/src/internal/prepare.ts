import { createHash, randomUUID } from "node:crypto"
import { Clock, type Duration, Effect, Schema, Tracer } from "effect"
import type { BrokerShape, OutgoingMessage } from "../Broker.js"
import * as Envelope from "../Envelope.js"
import { EncodeError, InvalidQueueName, PayloadTooLarge } from "../Errors.js"
import type * as Job from "../Job.js"
import * as QueueName from "../QueueName.js"
import { checkJsonSafe } from "./json.js"
import * as validate from "./validate.js"

/** Options for one enqueue. */
export interface EnqueueOptions {
  /** The job id; generated when absent. With an `idempotencyKey`, derived from the key. */
  readonly id?: string | undefined
  /** Run no earlier than this (a `Duration` input). */
  readonly delay?: Duration.Input | undefined
  /** 0 to 9, higher first. Overrides the job's default. */
  readonly priority?: number | undefined
  /** Jobs enqueued with the same key within the broker's (or store's) window are accepted once. */
  readonly idempotencyKey?: string | undefined
  /** Ordering group: jobs with one group run in order, one at a time (where the broker can). */
  readonly group?: string | undefined
  /** Attempts in all; overrides the job's default. */
  readonly attempts?: number | undefined
  /** Handler timeout; overrides the job's default. */
  readonly timeout?: Duration.Input | undefined
}

/** Max attempts a job may ask for. */
export const maxAttemptsLimit = 1000

export interface Prepared {
  readonly message: OutgoingMessage
  readonly envelope: Envelope.Envelope
  readonly idempotencyKey: string | undefined
}

const validatedQueues = new WeakMap<BrokerShape, Set<string>>()

export const validateQueue = (broker: BrokerShape, queue: string): Effect.Effect<string, InvalidQueueName> => {
  let known = validatedQueues.get(broker)
  if (known?.has(queue)) return Effect.succeed(queue)
  return Effect.flatMap(QueueName.validate(queue), () => {
    const reason = broker.validateQueueName(queue)
    if (reason !== undefined) return Effect.fail(new InvalidQueueName({ queue, reason }))
    if (!known) validatedQueues.set(broker, (known = new Set()))
    if (known.size < 10_000) known.add(queue)
    return Effect.succeed(queue)
  })
}

/** A stable broker-safe id derived from an idempotency key (hashing keeps ids short and free of `:`). */
export const idFromKey = (queue: string, key: string): string =>
  "k" + createHash("sha256").update(queue).update("\u0000").update(key).digest("base64url").slice(0, 32)

export const newId = (): string => randomUUID()

export const limitOf = (broker: BrokerShape): number => Math.min(Envelope.maxBytes, broker.capabilities.maxPayloadBytes)

/** Validate, encode and size-check one job; no I/O. */
export const prepare = Effect.fnUntraced(function* <A, I>(
  broker: BrokerShape,
  job: Job.Job<string, A, I>,
  payload: A,
  options: EnqueueOptions | undefined
) {
  yield* validateQueue(broker, job.queue)
  const delay = yield* validate.duration("delay", options?.delay, 0)
  const priority = yield* validate.integer("priority", options?.priority ?? job.priority, 0, 0, 9)
  const maxAttempts = yield* validate.integer("attempts", options?.attempts ?? job.attempts, 1, 1, maxAttemptsLimit)
  const timeout =
    options?.timeout !== undefined
      ? yield* validate.duration("timeout", options.timeout, 0)
      : job.timeout !== undefined
        ? yield* validate.duration("timeout", job.timeout, 0)
        : undefined
  const idempotencyKey = yield* validate.key("idempotencyKey", options?.idempotencyKey)
  const group = yield* validate.key("group", options?.group, 128)
  const explicitId = yield* validate.key("id", options?.id, 128)
  if (explicitId !== undefined && !/^[A-Za-z0-9_.-]+$/u.test(explicitId)) {
    return yield* validate.fail("id", "may only contain letters, digits, '-', '_' and '.'")
  }
  const encoded = yield* Schema.encodeUnknownEffect(job.payload)(payload).pipe(
    Effect.mapError((error) => new EncodeError({ job: job.name, message: String(error.message).slice(0, 2000) }))
  )
  const unsafe = checkJsonSafe(encoded)
  if (unsafe !== undefined)
    return yield* new EncodeError({
      job: job.name,
      message: `payload ${unsafe.slice(1) || "value"}`.replace("payload  ", "payload ")
    })
  const now = yield* Clock.currentTimeMillis
  const id = explicitId ?? (idempotencyKey !== undefined ? idFromKey(job.queue, idempotencyKey) : newId())
  const maxDelay = broker.capabilities.maxDelay
  const span = yield* Effect.option(Effect.currentSpan)
  const envelope: Envelope.Envelope = {
    v: 1,
    id,
    job: job.name,
    payload: encoded,
    attempts: 0,
    maxAttempts,
    enqueuedAt: now,
    priority,
    ...(delay > maxDelay ? { notBefore: now + delay } : {}),
    ...(idempotencyKey !== undefined ? { idempotencyKey } : {}),
    ...(group !== undefined ? { group } : {}),
    ...(timeout !== undefined && timeout > 0 ? { timeout } : {}),
    ...(span._tag === "Some" ? { trace: { traceId: span.value.traceId, spanId: span.value.spanId } } : {})
  }
  const body = Envelope.encode(envelope)
  const limit = limitOf(broker)
  const size = Envelope.byteLength(body)
  if (size > limit) return yield* new PayloadTooLarge({ size, limit })
  const message: OutgoingMessage = {
    id,
    body,
    delay: Math.min(delay, maxDelay),
    priority,
    ...(group !== undefined ? { group } : {}),
    ...(explicitId === undefined && idempotencyKey === undefined ? { unique: true } : {})
  }
  return { message, envelope, idempotencyKey } satisfies Prepared
})

export const externalParent = (envelope: Envelope.Envelope): Tracer.ExternalSpan | undefined =>
  envelope.trace ? Tracer.externalSpan({ traceId: envelope.trace.traceId, spanId: envelope.trace.spanId }) : undefined
