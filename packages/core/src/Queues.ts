/**
 * Queue-level operations that are not producing or consuming: stats, and deletion for tooling.
 *
 * @since 0.1.0
 */
import { Effect } from "effect"
import { Broker, type QueueStats } from "./Broker.js"
import type { BrokerError, InvalidQueueName } from "./Errors.js"
import { validateQueue } from "./internal/prepare.js"

export type { QueueStats } from "./Broker.js"

/**
 * Counts read from the broker: waiting, active, delayed, dead.
 *
 * @since 0.1.0
 */
export const stats = (queue: string): Effect.Effect<QueueStats, BrokerError | InvalidQueueName, Broker> =>
  Effect.gen(function* () {
    const broker = yield* Broker
    yield* validateQueue(broker, queue)
    return yield* broker.stats(queue)
  })

/**
 * Delete a queue and everything the broker keeps for it (dead letters included).
 *
 * @since 0.1.0
 */
export const destroy = (queue: string): Effect.Effect<void, BrokerError | InvalidQueueName, Broker> =>
  Effect.gen(function* () {
    const broker = yield* Broker
    yield* validateQueue(broker, queue)
    return yield* broker.deleteQueue(queue)
  })
