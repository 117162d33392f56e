/**
 * Names and arguments of everything the adapter declares for one work queue.
 *
 * Auxiliary names use `~`, a character core's queue-name rules refuse, so they can never
 * collide with a user's queue.
 *
 * Delays use power-of-two wait tiers: tier k is a queue whose per-queue TTL is
 * `resolution * 2^k` ms. A delay is rounded up to the resolution and written in binary, one
 * routing-key word per tier (highest first); the message visits the tiers of its set bits from the
 * highest to the lowest. Routing exchange k (a topic exchange) looks at bit k: set → wait tier k,
 * clear → routing exchange k−1 (an exchange-to-exchange binding), and below bit 0 the work queue.
 * Tier k dead-letters into routing exchange k−1 (tier 0 straight into the work queue); dead-lettering
 * keeps the routing key, so the bits travel with the message. That is N queues, N exchanges and 2N
 * bindings for N tiers. Every message in one tier has the same TTL, so the FIFO tier never blocks a
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
  /**
   * Storage version of the classic queues this adapter creates (`x-queue-version`): 2 declares it,
   * 1 leaves it to the broker's default (version 1 on RabbitMQ 3.x). Ignored for quorum queues.
   */
  readonly classicQueueVersion: 1 | 2
}

export const deadLetterQueue = (queue: string): string => `${queue}~dlq`
export const tierTtl = (settings: TopologySettings, tier: number): number => settings.resolution * 2 ** tier
export const waitQueue = (queue: string, settings: TopologySettings, tier: number): string =>
  `${queue}~wait~${tierTtl(settings, tier)}`
/** The topic exchange that reads bit `tier` of a delayed message's routing key. */
export const routeExchange = (queue: string, settings: TopologySettings, tier: number): string =>
  `${queue}~route~${tierTtl(settings, tier)}`
/** Where delayed messages are published: the routing exchange of the highest tier. */
export const delayExchange = (queue: string, settings: TopologySettings): string =>
  routeExchange(queue, settings, settings.tiers - 1)

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

/** The argument that selects a classic queue's storage version. */
export const queueVersionArgument = "x-queue-version"

const typeArguments = (settings: TopologySettings): Record<string, unknown> =>
  settings.queueType === "quorum"
    ? { "x-queue-type": "quorum" }
    : settings.classicQueueVersion === 2
      ? { [queueVersionArgument]: 2 }
      : {}

/**
 * The same declaration without `x-queue-version`: how a queue created before this adapter
 * declared the version (or by `classicQueueVersion: 1`) is declared again.
 */
export const withoutQueueVersion = (options: Options.AssertQueue): Options.AssertQueue => {
  const { [queueVersionArgument]: _, ...rest } = options.arguments ?? {}
  return { ...options, arguments: rest }
}

/**
 * The queue named in RabbitMQ's refusal of version 2 for a queue that exists without a storage
 * version (`inequivalent arg 'x-queue-version' for queue 'q' in vhost '/': received the value '2'
 * of type 'byte' but current is none`): such a queue can be declared again without the argument.
 * Undefined for any other error, the opposite mismatch (a version-2 queue declared without a
 * version) included, which nothing on this side can mend.
 */
export const unversionedQueueIn = (error: unknown): string | undefined => {
  const message = String((error as { message?: unknown } | null)?.message ?? "")
  const match =
    /inequivalent arg 'x-queue-version' for queue '((?:[^']|'(?! in vhost))*)' in vhost '.*': received the value '2'.* but current is none/u.exec(
      message
    )
  return match?.[1]
}

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

/**
 * Arguments of wait tier `tier`: per-queue TTL, dead-letter into the next lower routing exchange
 * (tier 0: into the work queue through the default exchange).
 */
export const waitQueueOptions = (queue: string, settings: TopologySettings, tier: number): Options.AssertQueue => ({
  durable: true,
  arguments: {
    ...typeArguments(settings),
    "x-message-ttl": tierTtl(settings, tier),
    ...(tier > 0
      ? { "x-dead-letter-exchange": routeExchange(queue, settings, tier - 1) }
      : { "x-dead-letter-exchange": "", "x-dead-letter-routing-key": queue }),
    // Quorum queues dead-letter at most once unless asked; at-least-once needs reject-publish.
    ...(settings.queueType === "quorum"
      ? { "x-dead-letter-strategy": "at-least-once", "x-overflow": "reject-publish" }
      : {})
  }
})

/** Every queue of `queue`'s topology with its declaration: the work queue, its dead letters, the wait tiers. */
export const queueDeclarations = (
  queue: string,
  settings: TopologySettings
): ReadonlyArray<readonly [string, Options.AssertQueue]> => [
  [queue, workQueueOptions(settings)],
  [deadLetterQueue(queue), deadLetterQueueOptions(settings)],
  ...Array.from(
    { length: settings.tiers },
    (_, tier) => [waitQueue(queue, settings, tier), waitQueueOptions(queue, settings, tier)] as const
  )
]

const repeat = (word: string, count: number): Array<string> => Array.from({ length: count }, () => word)

/** One binding: from `exchange` to a queue or an exchange (`destination`) with the topic `pattern`. */
export interface Binding {
  readonly exchange: string
  readonly destination: string
  readonly kind: "queue" | "exchange"
  readonly pattern: string
}

/** Every binding that routes delayed messages between tiers and back to the work queue. */
export const bindings = (queue: string, settings: TopologySettings): ReadonlyArray<Binding> => {
  const n = settings.tiers
  const result: Array<Binding> = []
  for (let tier = 0; tier < n; tier++) {
    const exchange = routeExchange(queue, settings, tier)
    const prefix = repeat("*", n - 1 - tier)
    result.push({
      exchange,
      destination: waitQueue(queue, settings, tier),
      kind: "queue",
      pattern: [...prefix, "1", "#"].join(".")
    })
    result.push(
      tier > 0
        ? {
            exchange,
            destination: routeExchange(queue, settings, tier - 1),
            kind: "exchange",
            pattern: [...prefix, "0", "#"].join(".")
          }
        : { exchange, destination: queue, kind: "queue", pattern: [...prefix, "0"].join(".") }
    )
  }
  return result
}
