/**
 * The one place where ioredis and BullMQ failures become `BrokerError`s: the shared Redis mapping
 * from `@errand/idempotency-redis`, with BullMQ's own "not found" wording.
 *
 * @internal
 */
import type { Errors } from "@errand/core"
import { RedisConnection } from "@errand/idempotency-redis"

export const { sanitize } = RedisConnection

/** BullMQ's Lua scripts report missing jobs and locks in these words. */
const bullmqNotFound =
  /Missing (lock|key) for job|Lock mismatch for job|job .* (not found|does not exist)|is not in the \w+ state|Missing job/iu

/** Classify a native failure by its code, name and message. */
export const reasonOf = (error: unknown): Errors.BrokerErrorReason => RedisConnection.reasonOf(error, bullmqNotFound)

/**
 * Map any ioredis / BullMQ failure to a `BrokerError`. `endpoint` is `host:port` only.
 *
 * @example
 * ```ts
 * Effect.tryPromise({ try: () => queue.add(...), catch: (e) => toBrokerError(e, "send", "127.0.0.1:6379") })
 * ```
 */
export const toBrokerError = (error: unknown, operation: string, endpoint: string): Errors.BrokerError =>
  RedisConnection.toBrokerError(error, operation, endpoint, bullmqNotFound)
