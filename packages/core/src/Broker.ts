/**
 * The broker contract: the one service an adapter implements. Core decides (retries, attempts,
 * DLQ policy, delays beyond the broker's maximum, validation); the broker moves opaque bodies.
 *
 * Rules every adapter keeps (the conformance suite in `@errand/testing` checks them):
 * - `send` returns only once the broker has durably accepted every message (publisher confirm,
 *   HTTP 200 per entry, Redis reply). Partial failure fails the whole call with `BrokerError`
 *   after the adapter has retried what it safely can.
 * - Every `Delivery` method is idempotent and never throws: the first settle (`ack`, `retry`,
 *   `deadLetter`, `release`) wins, later ones are no-ops. Failures are `BrokerError`s.
 * - A delivery that is never settled (the process died, or the handler hung) is redelivered after
 *   its lease. A broker without leases of its own (AMQP) keeps them locally: a delivery still
 *   unsettled when its lease ends is given back, and its late settles are dropped.
 * - Queue names reaching an adapter were validated by core (see `QueueName`), and the adapter's
 *   own `validateQueueName` was consulted.
 *
 * @since 0.1.0
 */
import { Context, Effect, Layer, type Option } from "effect"
import type { BrokerError } from "./Errors.js"

/**
 * What a broker can do natively. Static: the conformance suite checks that it matches what the
 * broker really does. Core emulates what is missing (long delays, attempt counting, DLQ) or fails
 * fast with `UnsupportedCapability`.
 *
 * @since 0.1.0
 */
export interface Capabilities {
  /**
   * Longest delay `send`/`retry` accept, in milliseconds (`Infinity` when unbounded). Core hops past
   * it. `0` means `send` cannot delay at all but `retry` with an unchanged body can delay a
   * redelivery by any amount (SQS FIFO hides the message); core then passes the whole remainder.
   */
  readonly maxDelay: number
  /** Whether `OutgoingMessage.priority` changes delivery order. */
  readonly priorities: boolean
  /** `"per-group"`: messages with one `group` are delivered in send order, one at a time. */
  readonly ordering: "none" | "per-group" | "fifo"
  /** Whether a second `send` with an id the broker still knows answers `duplicate: true`. */
  readonly deduplication: boolean
  /** Whether `Delivery.extendLease` really extends the lease. */
  readonly leaseExtension: boolean
  /** Largest body the broker takes, in bytes (UTF-8). */
  readonly maxPayloadBytes: number
  /** Whether confirmed messages survive a broker restart. */
  readonly persistent: boolean
}

/**
 * One message for `send`. `delay` is never above `Capabilities.maxDelay` (core guarantees it).
 *
 * @since 0.1.0
 */
export interface OutgoingMessage {
  /** The job id. Brokers with `deduplication` refuse a second message with the same id. */
  readonly id: string
  /** The encoded envelope: opaque to the broker, UTF-8 JSON. */
  readonly body: string
  /** Milliseconds before the message may be delivered; 0 for now. */
  readonly delay: number
  /** 0 (default) to 9; higher is delivered first where `priorities` holds. */
  readonly priority: number
  /** Ordering group, where `ordering` is `"per-group"`. */
  readonly group?: string | undefined
  /**
   * True when core generated the id (a random UUID, no idempotency key): no earlier message can
   * hold it, so an adapter may skip its duplicate check.
   */
  readonly unique?: boolean | undefined
}

/**
 * The broker's answer for one sent message, in the order they were given.
 *
 * @since 0.1.0
 */
export interface SendResult {
  readonly id: string
  /** True when the broker already held a message with this id and kept the old one. */
  readonly duplicate: boolean
  /** For a duplicate, the earlier message's state where the broker knows it (`"waiting"`, `"failed"`, `"dead"`…). */
  readonly existingState?: string | undefined
}

/**
 * Why a message went to the dead-letter queue.
 *
 * @since 0.1.0
 */
export type DeadLetterReason = "exhausted" | "unrecoverable" | "undecodable"

/**
 * What core hands the broker when it dead-letters a delivery.
 *
 * @since 0.1.0
 */
export interface DeadLetterRecord {
  /** The envelope as it was last delivered (or the raw body when it did not decode). */
  readonly body: string
  readonly reason: DeadLetterReason
  /** The last error, safe to show. */
  readonly error: string
  /** Attempts made (0 for an undecodable message). */
  readonly attempts: number
  /** Epoch milliseconds. */
  readonly failedAt: number
}

/**
 * A dead-lettered message as the broker stores it.
 *
 * @since 0.1.0
 */
export interface DeadLetterEntry extends DeadLetterRecord {
  /** The job id where known, else the broker's message id. Unique within the queue's DLQ. */
  readonly id: string
}

/**
 * One message handed to a worker, with the lease it holds.
 *
 * @since 0.1.0
 */
export interface Delivery {
  /** The job id (`OutgoingMessage.id`) where the broker carries it, else the broker's id. */
  readonly id: string
  readonly body: string
  /** The broker's own delivery count, 1-based. Informational: core trusts the envelope's counter. */
  readonly receiveCount: number
  /** Done: remove the message for good. */
  readonly ack: Effect.Effect<void, BrokerError>
  /**
   * Replace the message with `body` and deliver it again after `delay` ms (≤ `maxDelay`),
   * keeping its priority and group. Used for retries and for core-level delay hops.
   */
  readonly retry: (options: { readonly body: string; readonly delay: number }) => Effect.Effect<void, BrokerError>
  /** Move the message to this queue's dead-letter store with the record. */
  readonly deadLetter: (record: DeadLetterRecord) => Effect.Effect<void, BrokerError>
  /** Keep the lease for `ms` more milliseconds. A no-op where `leaseExtension` is false. */
  readonly extendLease: (ms: number) => Effect.Effect<void, BrokerError>
  /** Give the message back now, unchanged, without it counting as an attempt. */
  readonly release: Effect.Effect<void, BrokerError>
}

/**
 * Counts for one queue, read from the broker.
 *
 * @since 0.1.0
 */
export interface QueueStats {
  /** Ready to be delivered now. */
  readonly waiting: number
  /** Delivered and not yet settled. */
  readonly active: number
  /** Scheduled for later (delays and retry backoff). */
  readonly delayed: number
  /** In the dead-letter store. */
  readonly dead: number
}

/**
 * The dead-letter store of a broker. Ids are `DeadLetterEntry.id`.
 *
 * @since 0.1.0
 */
export interface DeadLetterStore {
  /** Entries oldest first. */
  readonly list: (
    queue: string,
    options: { readonly offset: number; readonly limit: number }
  ) => Effect.Effect<ReadonlyArray<DeadLetterEntry>, BrokerError>
  readonly get: (queue: string, id: string) => Effect.Effect<Option.Option<DeadLetterEntry>, BrokerError>
  readonly count: (queue: string) => Effect.Effect<number, BrokerError>
  /**
   * Send entries back to the work queue (all, or those in `ids`), each as the message `prepare`
   * returns (core resets the attempt counter there), and remove them from the store. Returns how
   * many were moved. At-least-once: an entry is removed only after its message was confirmed.
   */
  readonly redrive: (
    queue: string,
    options: {
      readonly ids?: ReadonlyArray<string> | undefined
      readonly prepare: (entry: DeadLetterEntry) => OutgoingMessage
    }
  ) => Effect.Effect<number, BrokerError>
  /** Delete entries (all, or those in `ids`). Returns how many were deleted. */
  readonly purge: (queue: string, ids?: ReadonlyArray<string>) => Effect.Effect<number, BrokerError>
}

/**
 * The broker contract.
 *
 * @since 0.1.0
 */
export interface BrokerShape {
  /** Short name for logs and metrics: `"memory"`, `"bullmq"`, `"sqs"`, `"rabbitmq"`. */
  readonly name: string
  readonly capabilities: Capabilities
  /**
   * Broker-specific queue name rules beyond core's (SQS FIFO needs `.fifo`…). Returns the reason a
   * name is refused, or `undefined`.
   */
  readonly validateQueueName: (queue: string) => string | undefined
  /** Send messages; returns once all are confirmed. Results are in input order. */
  readonly send: (
    queue: string,
    messages: ReadonlyArray<OutgoingMessage>
  ) => Effect.Effect<ReadonlyArray<SendResult>, BrokerError>
  /**
   * Take up to `max` deliveries, each leased for `lease` ms, waiting up to `wait` ms for the first.
   * Returns an empty array when nothing came. Interrupting it loses nothing.
   */
  readonly take: (
    queue: string,
    options: { readonly max: number; readonly lease: number; readonly wait: number }
  ) => Effect.Effect<ReadonlyArray<Delivery>, BrokerError>
  readonly deadLetters: DeadLetterStore
  readonly stats: (queue: string) => Effect.Effect<QueueStats, BrokerError>
  /**
   * Delete the queue and everything the broker keeps for it (dead letters, wait queues, keys).
   * For tests and tooling; idempotent.
   */
  readonly deleteQueue: (queue: string) => Effect.Effect<void, BrokerError>
}

/**
 * The broker service. Adapters provide it (and their own tag) from their `layer`.
 *
 * @since 0.1.0
 */
export class Broker extends Context.Service<Broker, BrokerShape>()("@errand/core/Broker") {}

/**
 * Wrap a broker layer so it declares other capabilities, for example a small `maxDelay` to test
 * core-level delay hops.
 *
 * @example
 * ```ts
 * const tiny = Broker.withCapabilities(MemoryBroker.layer(), { maxDelay: 200 })
 * ```
 *
 * @since 0.1.0
 */
export const withCapabilities = <E, R>(
  layer: Layer.Layer<Broker, E, R>,
  patch: Partial<Capabilities>
): Layer.Layer<Broker, E, R> =>
  Layer.effect(
    Broker,
    Effect.map(Broker, (broker) => Broker.of({ ...broker, capabilities: { ...broker.capabilities, ...patch } }))
  ).pipe(Layer.provide(layer))
