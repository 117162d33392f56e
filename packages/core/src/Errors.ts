/**
 * Every expected failure Errand can answer with. Each is a `Schema.TaggedError`, so it can be
 * caught by tag (`Effect.catchTag("PayloadTooLarge", ...)`) and carried across process
 * boundaries. No error ever carries a password, token or full connection URL.
 *
 * @since 0.1.0
 */
import { Schema } from "effect"

/**
 * The family of reasons a broker operation can fail for.
 *
 * @since 0.1.0
 */
export const BrokerErrorReason = Schema.Literals([
  "Connection",
  "Timeout",
  "Throttled",
  "Unauthorized",
  "NotFound",
  "PayloadTooLarge",
  "Unroutable",
  "Unknown"
])

/**
 * @since 0.1.0
 */
export type BrokerErrorReason = typeof BrokerErrorReason.Type

/**
 * A broker operation failed. `operation` names the broker call (`send`, `take`, `ack`…),
 * `message` is safe to log (adapters strip credentials before building it).
 *
 * @since 0.1.0
 */
export class BrokerError extends Schema.TaggedError<BrokerError>()("BrokerError", {
  reason: BrokerErrorReason,
  operation: Schema.String,
  message: Schema.String
}) {
  /** Whether trying the same operation again later may succeed. */
  get isRetryable(): boolean {
    return this.reason === "Connection" || this.reason === "Timeout" || this.reason === "Throttled"
  }
}

/**
 * A queue name (or a key prefix) that no broker would accept safely.
 *
 * @since 0.1.0
 */
export class InvalidQueueName extends Schema.TaggedError<InvalidQueueName>()("InvalidQueueName", {
  queue: Schema.String,
  reason: Schema.String
}) {
  override get message(): string {
    return `Invalid queue name ${JSON.stringify(this.queue.slice(0, 100))}: ${this.reason}`
  }
}

/**
 * An option out of its domain: a negative or infinite delay, attempts ≤ 0, a concurrency of 0…
 *
 * @since 0.1.0
 */
export class InvalidOption extends Schema.TaggedError<InvalidOption>()("InvalidOption", {
  option: Schema.String,
  reason: Schema.String
}) {
  override get message(): string {
    return `Invalid option "${this.option}": ${this.reason}`
  }
}

/**
 * The encoded envelope is larger than min(library cap, broker cap). Raised before any I/O.
 *
 * @since 0.1.0
 */
export class PayloadTooLarge extends Schema.TaggedError<PayloadTooLarge>()("PayloadTooLarge", {
  size: Schema.Number,
  limit: Schema.Number
}) {
  override get message(): string {
    return `Payload of ${this.size} bytes exceeds the limit of ${this.limit} bytes`
  }
}

/**
 * The payload could not be encoded with the job's schema (or to JSON). Nothing was sent.
 *
 * @since 0.1.0
 */
export class EncodeError extends Schema.TaggedError<EncodeError>()("EncodeError", {
  job: Schema.String,
  message: Schema.String
}) {}

/**
 * The broker cannot do what was asked and core cannot emulate it.
 *
 * @since 0.1.0
 */
export class UnsupportedCapability extends Schema.TaggedError<UnsupportedCapability>()("UnsupportedCapability", {
  broker: Schema.String,
  capability: Schema.String,
  message: Schema.String
}) {}

/**
 * Why a message could not be turned back into a job. Used as the dead-letter reason for
 * messages that are dropped into the DLQ without a retry.
 *
 * @since 0.1.0
 */
export class DecodeError extends Schema.TaggedError<DecodeError>()("DecodeError", {
  reason: Schema.Literals([
    "TooLarge",
    "NotJson",
    "TooDeep",
    "ForbiddenKey",
    "UnknownVersion",
    "InvalidEnvelope",
    "UnknownJob",
    "InvalidPayload"
  ]),
  message: Schema.String
}) {}

/**
 * A job with this idempotency key (or id) already exists and enqueueing it again was refused
 * because the earlier one failed or was dead-lettered: redrive it or use a new key.
 *
 * @since 0.1.0
 */
export class DuplicateJob extends Schema.TaggedError<DuplicateJob>()("DuplicateJob", {
  id: Schema.String,
  state: Schema.String
}) {
  override get message(): string {
    return `Job ${this.id} already exists in state "${this.state}"`
  }
}

/**
 * Errors that `Producer.enqueue` can fail with.
 *
 * @since 0.1.0
 */
export type EnqueueError =
  | BrokerError
  | InvalidQueueName
  | InvalidOption
  | PayloadTooLarge
  | EncodeError
  | UnsupportedCapability
  | DuplicateJob
