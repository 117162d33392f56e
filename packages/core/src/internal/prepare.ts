import { createHash, randomUUID } from "node:crypto"
import { Clock, Context, type Duration, Effect, type Fiber, Result, Schema, Tracer } from "effect"
import type { BrokerShape, OutgoingMessage } from "../Broker.js"
import * as Envelope from "../Envelope.js"
import { EncodeError, InvalidOption, InvalidQueueName, PayloadTooLarge } from "../Errors.js"
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
export const maxAttemptsLimit = Envelope.maxAttempts

export interface Prepared {
  readonly message: OutgoingMessage
  readonly envelope: Envelope.Envelope
  readonly idempotencyKey: string | undefined
}

const validatedQueues = new WeakMap<BrokerShape, Set<string>>()

const queueNameError = (broker: BrokerShape, queue: string): InvalidQueueName | undefined => {
  let known = validatedQueues.get(broker)
  if (known?.has(queue)) return undefined
  const reason = QueueName.check(queue) ?? broker.validateQueueName(queue)
  if (reason !== undefined) return new InvalidQueueName({ queue: String(queue), reason })
  if (!known) validatedQueues.set(broker, (known = new Set()))
  if (known.size < 10_000) known.add(queue)
  return undefined
}

export const validateQueue = (broker: BrokerShape, queue: string): Effect.Effect<string, InvalidQueueName> =>
  Effect.suspend(() => {
    const error = queueNameError(broker, queue)
    return error ? Effect.fail(error) : Effect.succeed(queue)
  })

/** A stable broker-safe id derived from an idempotency key (hashing keeps ids short and free of `:`). */
export const idFromKey = (queue: string, key: string): string =>
  "k" + createHash("sha256").update(queue).update("\u0000").update(key).digest("base64url").slice(0, 32)

export const newId = (): string => randomUUID()

export const limitOf = (broker: BrokerShape): number => Math.min(Envelope.maxBytes, broker.capabilities.maxPayloadBytes)

type PrepareError = InvalidQueueName | InvalidOption | EncodeError | PayloadTooLarge

const idPattern = /^[A-Za-z0-9_.-]+$/u

/**
 * Validate, encode and size-check one job; no I/O. Synchronous on purpose: it runs once per
 * enqueued job, and a chain of effects here cost more than the broker call itself.
 */
export const prepareSync = <A, I>(
  broker: BrokerShape,
  job: Job.Job<string, A, I>,
  payload: A,
  options: EnqueueOptions | undefined,
  now: number,
  trace: Envelope.Envelope["trace"] | undefined
): Prepared | PrepareError => {
  const queueError = queueNameError(broker, job.queue)
  if (queueError) return queueError
  const delay = validate.durationSync("delay", options?.delay, 0)
  if (typeof delay !== "number") return delay
  const priority = validate.integerSync("priority", options?.priority ?? job.priority, 0, 0, 9)
  if (typeof priority !== "number") return priority
  const maxAttempts = validate.integerSync("attempts", options?.attempts ?? job.attempts, 1, 1, maxAttemptsLimit)
  if (typeof maxAttempts !== "number") return maxAttempts
  const timeoutInput = options?.timeout !== undefined ? options.timeout : job.timeout
  const timeout = timeoutInput === undefined ? undefined : validate.durationSync("timeout", timeoutInput, 0)
  if (timeout instanceof InvalidOption) return timeout
  const idempotencyKey = validate.keySync("idempotencyKey", options?.idempotencyKey)
  if (idempotencyKey instanceof InvalidOption) return idempotencyKey
  const group = validate.keySync("group", options?.group, 128)
  if (group instanceof InvalidOption) return group
  const explicitId = validate.keySync("id", options?.id, 128)
  if (explicitId instanceof InvalidOption) return explicitId
  if (explicitId !== undefined && !idPattern.test(explicitId)) {
    return new InvalidOption({ option: "id", reason: "may only contain letters, digits, '-', '_' and '.'" })
  }
  const encoded = encoderOf(job)(payload)
  if (Result.isFailure(encoded)) {
    return new EncodeError({ job: job.name, message: String(encoded.failure.message).slice(0, 2000) })
  }
  const unsafe = checkJsonSafe(encoded.success)
  if (unsafe !== undefined) {
    return new EncodeError({
      job: job.name,
      message: `payload ${unsafe.slice(1) || "value"}`.replace("payload  ", "payload ")
    })
  }
  const id = explicitId ?? (idempotencyKey !== undefined ? idFromKey(job.queue, idempotencyKey) : newId())
  const maxDelay = broker.capabilities.maxDelay
  const envelope: Envelope.Envelope = {
    v: 1,
    id,
    job: job.name,
    payload: encoded.success,
    attempts: 0,
    maxAttempts,
    enqueuedAt: now,
    priority,
    ...(delay > maxDelay ? { notBefore: now + delay } : {}),
    ...(idempotencyKey !== undefined ? { idempotencyKey } : {}),
    ...(group !== undefined ? { group } : {}),
    ...(timeout !== undefined && timeout > 0 ? { timeout } : {}),
    ...(trace !== undefined ? { trace } : {})
  }
  const body = Envelope.encode(envelope)
  const limit = limitOf(broker)
  // UTF-8 takes at most 3 bytes per UTF-16 unit: a short body cannot exceed the limit, skip counting
  const size = body.length * 3 < limit ? body.length : Envelope.byteLength(body)
  if (size > limit) return new PayloadTooLarge({ size, limit })
  const message: OutgoingMessage = {
    id,
    body,
    delay: Math.min(delay, maxDelay),
    priority,
    ...(group !== undefined ? { group } : {}),
    ...(explicitId === undefined && idempotencyKey === undefined ? { unique: true } : {})
  }
  return { message, envelope, idempotencyKey }
}

const encoders = new WeakMap<Job.Any, (input: unknown) => Result.Result<unknown, Schema.SchemaError>>()
const encoderOf = (job: Job.Any) => {
  let encoder = encoders.get(job)
  if (encoder === undefined) {
    encoder = Schema.encodeUnknownResult(job.payload) as (input: unknown) => Result.Result<unknown, Schema.SchemaError>
    encoders.set(job, encoder)
  }
  return encoder
}

/** The trace context of the calling fiber's current span, to carry to the worker. */
export const currentTrace = (fiber: Fiber.Fiber<unknown, unknown>): Envelope.Envelope["trace"] | undefined => {
  const parent = Context.getOrUndefined(fiber.context, Tracer.ParentSpan)
  return parent !== undefined && parent._tag === "Span" ? { traceId: parent.traceId, spanId: parent.spanId } : undefined
}

/** Validate, encode and size-check one job; no I/O. */
export const prepare = <A, I>(
  broker: BrokerShape,
  job: Job.Job<string, A, I>,
  payload: A,
  options: EnqueueOptions | undefined
): Effect.Effect<Prepared, PrepareError> =>
  Effect.withFiber((fiber) => {
    const now = fiber.getRef(Clock.Clock).currentTimeMillisUnsafe()
    const result = prepareSync(broker, job, payload, options, now, currentTrace(fiber))
    return "message" in result && "envelope" in result
      ? Effect.succeed(result as Prepared)
      : Effect.fail(result as PrepareError)
  })

export const externalParent = (envelope: Envelope.Envelope): Tracer.ExternalSpan | undefined =>
  envelope.trace ? Tracer.externalSpan({ traceId: envelope.trace.traceId, spanId: envelope.trace.spanId }) : undefined
