/**
 * The dead-letter queue API: list, inspect, count, redrive (all or by id, attempts reset) and
 * purge. A dead-letter record keeps the original envelope, the last error, the attempts made and
 * when it failed.
 *
 * @since 0.1.0
 */
import { Effect, Exit, Option } from "effect"
import { Broker, type DeadLetterEntry, type DeadLetterReason, type OutgoingMessage } from "./Broker.js"
import * as Envelope from "./Envelope.js"
import type { BrokerError, InvalidOption, InvalidQueueName } from "./Errors.js"
import { validateQueue } from "./internal/prepare.js"
import * as validate from "./internal/validate.js"

/**
 * A dead-lettered job as the API shows it.
 *
 * @since 0.1.0
 */
export interface DeadLetter {
  readonly id: string
  readonly reason: DeadLetterReason
  /** The last error. */
  readonly error: string
  readonly attempts: number
  readonly failedAt: number
  /** The decoded envelope (job name, encoded payload, timestamps), when the body was one. */
  readonly envelope: Envelope.Envelope | undefined
  /** The body exactly as it was on the wire. */
  readonly body: string
}

const toDeadLetter = (entry: DeadLetterEntry): DeadLetter => {
  const decoded = Effect.runSyncExit(Envelope.decode(entry.body))
  return {
    id: entry.id,
    reason: entry.reason,
    error: entry.error,
    attempts: entry.attempts,
    failedAt: entry.failedAt,
    envelope: Exit.isSuccess(decoded) ? decoded.value : undefined,
    body: entry.body
  }
}

/**
 * The message that sends a dead letter back: attempts reset to 0, any pending delay dropped.
 * Bodies that never decoded go back unchanged (they will land in the DLQ again unless the worker
 * learned to read them).
 *
 * @since 0.1.0
 */
export const prepareRedrive = (entry: DeadLetterEntry): OutgoingMessage => {
  const decoded = Effect.runSyncExit(Envelope.decode(entry.body))
  if (Exit.isFailure(decoded)) return { id: entry.id, body: entry.body, delay: 0, priority: 0 }
  const { notBefore: _notBefore, ...rest } = decoded.value
  const envelope: Envelope.Envelope = { ...rest, attempts: 0 }
  return {
    id: envelope.id,
    body: Envelope.encode(envelope),
    delay: 0,
    priority: envelope.priority,
    ...(envelope.group !== undefined ? { group: envelope.group } : {})
  }
}

/**
 * Dead letters of a queue, oldest first.
 *
 * @since 0.1.0
 */
export const list = (
  queue: string,
  options?: { readonly offset?: number | undefined; readonly limit?: number | undefined }
): Effect.Effect<ReadonlyArray<DeadLetter>, BrokerError | InvalidQueueName | InvalidOption, Broker> =>
  Effect.gen(function* () {
    const broker = yield* Broker
    yield* validateQueue(broker, queue)
    const offset = yield* validate.integer("offset", options?.offset, 0, 0, Number.MAX_SAFE_INTEGER)
    const limit = yield* validate.integer("limit", options?.limit, 100, 1, 10_000)
    const entries = yield* broker.deadLetters.list(queue, { offset, limit })
    return entries.map(toDeadLetter)
  })

/**
 * One dead letter by id.
 *
 * @since 0.1.0
 */
export const get = (
  queue: string,
  id: string
): Effect.Effect<Option.Option<DeadLetter>, BrokerError | InvalidQueueName, Broker> =>
  Effect.gen(function* () {
    const broker = yield* Broker
    yield* validateQueue(broker, queue)
    return Option.map(yield* broker.deadLetters.get(queue, id), toDeadLetter)
  })

/**
 * How many dead letters a queue holds.
 *
 * @since 0.1.0
 */
export const count = (queue: string): Effect.Effect<number, BrokerError | InvalidQueueName, Broker> =>
  Effect.gen(function* () {
    const broker = yield* Broker
    yield* validateQueue(broker, queue)
    return yield* broker.deadLetters.count(queue)
  })

/**
 * Send dead letters back to their queue (all, or those in `ids`) with attempts reset. Returns how
 * many moved.
 *
 * @since 0.1.0
 */
export const redrive = (
  queue: string,
  options?: { readonly ids?: ReadonlyArray<string> | undefined }
): Effect.Effect<number, BrokerError | InvalidQueueName, Broker> =>
  Effect.gen(function* () {
    const broker = yield* Broker
    yield* validateQueue(broker, queue)
    return yield* broker.deadLetters.redrive(queue, { ids: options?.ids, prepare: prepareRedrive })
  }).pipe(Effect.withSpan("errand.deadLetters.redrive", { attributes: { "errand.queue": queue } }))

/**
 * Delete dead letters (all, or those in `ids`). Returns how many were deleted.
 *
 * @since 0.1.0
 */
export const purge = (
  queue: string,
  options?: { readonly ids?: ReadonlyArray<string> | undefined }
): Effect.Effect<number, BrokerError | InvalidQueueName, Broker> =>
  Effect.gen(function* () {
    const broker = yield* Broker
    yield* validateQueue(broker, queue)
    return yield* broker.deadLetters.purge(queue, options?.ids)
  })
