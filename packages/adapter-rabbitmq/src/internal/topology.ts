/**
 * Names and arguments of everything the adapter declares for one work queue.
 *
 * Auxiliary names use `~`, a character core's queue-name rules refuse, so they can never
 * collide with a user's queue.
 *
 * Delays use power-of-two wait tiers: tier k is a queue whose per-queue TTL is
 * `resolution * 2^k` ms. A delay is rounded up to the resolution and written in binary; the
 * message visits the tiers of its set bits from the highest to the lowest. Each tier queue
 * dead-letters into its own topic exchange, whose bindings read the bits (the routing key, which
 * dead-lettering preserves) and send the message to the next lower set bit, or to the work queue
 * once no bit is left. Every message in one tier has the same TTL, so the FIFO tier never blocks a
 * short message behind a long one.
 */
import type { Options } from "amqplib"

/** How the topology of one queue is shaped. */
export interface TopologySettings {
  readonly queueType: "classic" | "quorum"
  /** `x-max-priority` for classic work queues; 0 for none. */
  readonly maxPriority: number
  /** Delay rounding unit and TTL of the smallest tier, ms. */
  readonly resolution: number
  /** Number of wait tiers. */
  readonly tiers: number
}

export const deadLetterQueue = (queue: string): string => `${queue}~dlq`
export const delayExchange = (queue: string): string => `${queue}~delay`
export const tierTtl = (settings: TopologySettings, tier: number): number => settings.resolution * 2 ** tier
export const waitQueue = (queue: string, settings: TopologySettings, tier: number): string =>
  `${queue}~wait~${tierTtl(settings, tier)}`
export const afterTierExchange = (queue: string, settings: TopologySettings, tier: number): string =>
  `${queue}~after~${tierTtl(settings, tier)}`

/** Largest delay the tiers can express: the sum of all tiers. */
export const maxDelay = (settings: TopologySettings): number => settings.resolution * (2 ** settings.tiers - 1)

/**
 * The routing key of a delayed message: one word per tier, highest tier first, "1" when the
 * message visits it. `undefined` for a delay that rounds to zero.
 */
export const delayRoutingKey = (settings: TopologySettings, delay: number): string | undefined => {
  const units = Math.min(Math.ceil(delay / settings.resolution), 2 ** settings.tiers - 1)
  if (!(units > 0)) return undefined
  const words: Array<string> = []
  for (let tier = settings.tiers - 1; tier >= 0; tier--) words.push(Math.floor(units / 2 ** tier) % 2 === 1 ? "1" : "0")
  return words.join(".")
}

/** Which tier queues a delay visits, highest first (for tests and docs). */
export const tiersFor = (settings: TopologySettings, delay: number): ReadonlyArray<number> => {
  const key = delayRoutingKey(settings, delay)
  if (key === undefined) return []
  return key.split(".").flatMap((bit, index) => (bit === "1" ? [settings.tiers - 1 - index] : []))
}

const typeArguments = (settings: TopologySettings): Record<string, unknown> =>
  settings.queueType === "quorum" ? { "x-queue-type": "quorum" } : {}

/** Arguments of the work queue. */
export const workQueueOptions = (settings: TopologySettings): Options.AssertQueue => ({
  durable: true,
  arguments: {
    ...typeArguments(settings),
    ...(settings.queueType === "classic" && settings.maxPriority > 0 ? { "x-max-priority": settings.maxPriority } : {})
  }
})

/** Arguments of the dead-letter queue (no priority: oldest first). */
export const deadLetterQueueOptions = (settings: TopologySettings): Options.AssertQueue => ({
  durable: true,
  arguments: typeArguments(settings)
})

/** Arguments of wait tier `tier`: per-queue TTL, dead-letter into the tier's router exchange. */
export const waitQueueOptions = (queue: string, settings: TopologySettings, tier: number): Options.AssertQueue => ({
  durable: true,
  arguments: {
    ...typeArguments(settings),
    "x-message-ttl": tierTtl(settings, tier),
    "x-dead-letter-exchange": afterTierExchange(queue, settings, tier),
    // Quorum queues dead-letter at most once unless asked; at-least-once needs reject-publish.
    ...(settings.queueType === "quorum" ? { "x-dead-letter-strategy": "at-least-once", "x-overflow": "reject-publish" } : {})
  }
})

const repeat = (word: string, count: number): Array<string> => Array.from({ length: count }, () => word)

/** One binding: from `exchange` to `queue` with the topic `pattern`. */
export interface Binding {
  readonly exchange: string
  readonly queue: string
  readonly pattern: string
}

/** Every binding that routes delayed messages between tiers and back to the work queue. */
export const bindings = (queue: string, settings: TopologySettings): ReadonlyArray<Binding> => {
  const n = settings.tiers
  const result: Array<Binding> = []
  // Entry: the highest set bit picks the first tier.
  for (let j = 0; j < n; j++) {
    result.push({
      exchange: delayExchange(queue),
      queue: waitQueue(queue, settings, j),
      pattern: [...repeat("0", n - 1 - j), "1", "#"].join(".")
    })
  }
  // After tier k: the next lower set bit, or the work queue when none is left.
  for (let k = 0; k < n; k++) {
    const exchange = afterTierExchange(queue, settings, k)
    for (let j = 0; j < k; j++) {
      result.push({
        exchange,
        queue: waitQueue(queue, settings, j),
        pattern: [...repeat("*", n - k), ...repeat("0", k - 1 - j), "1", "#"].join(".")
      })
    }
    result.push({ exchange, queue, pattern: [...repeat("*", n - k), ...repeat("0", k)].join(".") })
  }
  return result
}
