/**
 * Errand's broker on RabbitMQ (amqplib): confirmed mandatory publishes, durable queues and
 * persistent messages, plugin-free delays through power-of-two TTL wait tiers, a dead-letter queue
 * per work queue with list / redrive / purge done on the broker, stale-channel-safe settles and
 * reconnection with consumers that resume by themselves.
 *
 * @since 0.1.0
 */
import { Broker, Errors } from "@errand/core"
import type * as amqp from "amqplib"
import { Config, Context, Effect, Layer, Option } from "effect"
import { Client, type Publication, withTimeout } from "./internal/client.js"
import { QueueConsumer, type Entry } from "./internal/consumer.js"
import * as DeadLetters from "./internal/deadLetters.js"
import { endpointOf, toBrokerError } from "./internal/errors.js"
import * as Topology from "./internal/topology.js"

/**
 * Options of the RabbitMQ broker. Every field has a default.
 *
 * @since 0.1.0
 */
export interface Options {
  /**
   * AMQP URL, `amqp://` or `amqps://` (TLS), or amqplib's connection options (`hostname`, `port`,
   * `username`, `password`, `vhost`, `protocol: "amqps"`…). Default
   * `amqp://guest:guest@127.0.0.1:5672`. A `heartbeat` of 10 s is added unless one is set
   * (`?heartbeat=30`; 0 disables).
   */
  readonly url?: string | amqp.Options.Connect | undefined
  /** Passed to amqplib's `connect` (TLS `ca`/`cert`/`key`, `timeout`, `heartbeat`…). */
  readonly socketOptions?: Record<string, unknown> | undefined
  /**
   * `"classic"` (default): priorities through `x-max-priority`. `"quorum"`: replicated, no
   * priorities on RabbitMQ 3.10. Applies to every queue this broker declares.
   */
  readonly queueType?: "classic" | "quorum" | undefined
  /** `x-max-priority` of classic work queues, 1–9 (default 9); 0 turns priorities off. */
  readonly maxPriority?: number | undefined
  /**
   * Storage version of the classic queues this broker creates (`x-queue-version`). Default 2
   * (CQv2, RabbitMQ 3.10+: more throughput and sooner confirms under load; recommended by RabbitMQ
   * 3.13, the only one in 4.3). A queue that already exists keeps its version: one created without
   * the argument is declared again without it. `1` declares no version (the broker's default,
   * version 1 on RabbitMQ 3.x).
   */
  readonly classicQueueVersion?: 1 | 2 | undefined
  /** Delays are rounded up to a multiple of this, in ms; also the smallest wait tier. Default 100. */
  readonly delayResolution?: number | undefined
  /** Number of power-of-two wait tiers per queue. Default 16 (max delay ≈ 1.8 h at 100 ms). */
  readonly delayTiers?: number | undefined
  /** How long one `send` may take, waiting for a reconnect and retrying included, ms. Default 30,000. */
  readonly sendTimeout?: number | undefined
  /** How long to wait for the connection when creating a channel, ms. Default 30,000. */
  readonly connectTimeout?: number | undefined
  /** Reconnect backoff, ms. Default 100 doubling up to 5,000. */
  readonly reconnect?:
    | { readonly initialDelay?: number | undefined; readonly maxDelay?: number | undefined }
    | undefined
  /** Shown in RabbitMQ's connection list. Default `"errand"`. */
  readonly connectionName?: string | undefined
  /** Largest body accepted, bytes. Default 16 MiB (RabbitMQ 4's `max_message_size` default). */
  readonly maxPayloadBytes?: number | undefined
  /**
   * Whether `extendLease` extends the adapter's local lease (and `capabilities.leaseExtension` is
   * true). Default true. Either way the broker's `consumer_timeout` bounds how long a delivery
   * may stay unacked (see the README).
   */
  readonly leaseExtension?: boolean | undefined
  /**
   * How many deliveries the broker may send ahead of the worker's free slots: the consumer's
   * prefetch is (deliveries in flight + the take's `max` + this). They wait in this process's
   * buffer, unleased, until a take hands them out, and go back to the queue when the layer closes
   * or the consumer is idle (`consumerIdleTimeout`).
   * Default 10; 0 makes the prefetch follow the worker's concurrency exactly (a worker at
   * concurrency 1 then waits a full round trip to the broker between two jobs).
   */
  readonly prefetchAhead?: number | undefined
  /**
   * A queue's consumer that no take has used for at least this long, ms, while none of its
   * deliveries is handed out or being retried or dead-lettered (the worker stopped, the layer lives
   * on), is cancelled and what it buffered goes back to the queue; the next take starts a new one.
   * Default 5,000; `Infinity` never.
   */
  readonly consumerIdleTimeout?: number | undefined
}

/**
 * The default AMQP URL.
 *
 * @since 0.1.0
 */
export const defaultUrl = "amqp://guest:guest@127.0.0.1:5672"

// RabbitMQ suggests a 60 s heartbeat: a dead peer would go unnoticed for two minutes.
const defaultHeartbeatSeconds = 10

/** The URL (or connection options) with a `heartbeat` unless it has one. */
const withHeartbeat = (url: string | amqp.Options.Connect): string | amqp.Options.Connect => {
  if (typeof url !== "string") return url.heartbeat === undefined ? { ...url, heartbeat: defaultHeartbeatSeconds } : url
  try {
    const parsed = new URL(url)
    if (parsed.searchParams.has("heartbeat")) return url
    parsed.searchParams.set("heartbeat", String(defaultHeartbeatSeconds))
    return parsed.toString()
  } catch {
    return url
  }
}

const defaultPrefetchAhead = 10

/** The options no clamp can make sense of, refused with a typed error. */
const checkOptions = (options: Options): Errors.InvalidOption | undefined => {
  const ahead = options.prefetchAhead
  if (ahead !== undefined && !(Number.isInteger(ahead) && ahead >= 0 && ahead <= 1000)) {
    return new Errors.InvalidOption({
      option: "prefetchAhead",
      reason: `must be an integer from 0 to 1,000, got ${String(ahead)}`
    })
  }
  const version = options.classicQueueVersion
  if (version !== undefined && version !== 1 && version !== 2) {
    return new Errors.InvalidOption({
      option: "classicQueueVersion",
      reason: `must be 1 or 2, got ${String(version)}`
    })
  }
  const idle = options.consumerIdleTimeout
  if (idle !== undefined && !(typeof idle === "number" && idle > 0)) {
    return new Errors.InvalidOption({
      option: "consumerIdleTimeout",
      reason: `must be a positive number of milliseconds (Infinity: never), got ${String(idle)}`
    })
  }
  return undefined
}

const resolve = (options: Options) => {
  const queueType = options.queueType ?? "classic"
  const settings: Topology.TopologySettings = {
    queueType,
    maxPriority: queueType === "classic" ? Math.max(0, Math.min(9, Math.floor(options.maxPriority ?? 9))) : 0,
    resolution: Math.max(1, Math.floor(options.delayResolution ?? 100)),
    tiers: Math.max(1, Math.min(30, Math.floor(options.delayTiers ?? 16))),
    classicQueueVersion: options.classicQueueVersion ?? 2
  }
  return {
    url: withHeartbeat(options.url ?? defaultUrl),
    settings,
    maxPayloadBytes: options.maxPayloadBytes ?? 16 * 1024 * 1024,
    sendTimeout: options.sendTimeout ?? 30_000,
    connectTimeout: options.connectTimeout ?? 30_000,
    reconnect: {
      initialDelay: options.reconnect?.initialDelay ?? 100,
      maxDelay: options.reconnect?.maxDelay ?? 5_000
    },
    connectionName: options.connectionName ?? "errand",
    leaseExtension: options.leaseExtension ?? true,
    prefetchAhead: options.prefetchAhead ?? defaultPrefetchAhead,
    consumerIdleTimeout: options.consumerIdleTimeout ?? 5_000,
    socketOptions: options.socketOptions ?? {}
  }
}

/**
 * Capabilities for the given options (they depend on the queue type and the delay tiers).
 *
 * @since 0.1.0
 */
export const capabilitiesFor = (options: Options = {}): Broker.Capabilities => {
  const resolved = resolve(options)
  return {
    maxDelay: Topology.maxDelay(resolved.settings),
    priorities: resolved.settings.maxPriority > 0,
    ordering: "none",
    deduplication: false,
    leaseExtension: resolved.leaseExtension,
    maxPayloadBytes: resolved.maxPayloadBytes,
    persistent: true
  }
}

/**
 * Capabilities with the default options (classic queues): see the README's table.
 *
 * @since 0.1.0
 */
export const capabilities: Broker.Capabilities = capabilitiesFor()

/**
 * Why RabbitMQ would refuse `queue`, beyond core's rules: names over 255 bytes (counting the
 * adapter's longest auxiliary name) and the reserved `amq.` prefix.
 *
 * @since 0.1.0
 */
export const validateQueueName =
  (options: Options = {}) =>
  (queue: string): string | undefined => {
    const { settings } = resolve(options)
    if (queue.startsWith("amq.")) return "the 'amq.' prefix is reserved by RabbitMQ"
    const longest = Topology.routeExchange(queue, settings, settings.tiers - 1)
    if (Buffer.byteLength(longest, "utf8") > 255) return "too long for RabbitMQ once suffixed (255 bytes at most)"
    return undefined
  }

/**
 * What the adapter's own tag offers: the broker contract plus diagnostics.
 *
 * @since 0.1.0
 */
export interface RabbitMQBrokerShape extends Broker.BrokerShape {
  /** `host:port` of the broker (never credentials). */
  readonly endpoint: string
  /** The resolved topology settings (queue type, priorities, delay tiers). */
  readonly settings: Topology.TopologySettings
  /** The wait tiers (TTL in ms) a delay visits, highest first. */
  readonly tiersFor: (delay: number) => ReadonlyArray<number>
  /**
   * The consumer channel of `queue` and its generation (bumped on every new channel), for tests
   * and diagnostics. Do not settle messages through it.
   */
  readonly unsafeConsumer: (
    queue: string
  ) => { readonly channel: amqp.Channel | undefined; readonly generation: number } | undefined
  /** How many connection losses this broker went through. */
  readonly connectionGeneration: Effect.Effect<number>
}

/**
 * The RabbitMQ broker's own tag. Its layer also provides core's `Broker.Broker`.
 *
 * @since 0.1.0
 */
export class RabbitMQBroker extends Context.Service<RabbitMQBroker, RabbitMQBrokerShape>()(
  "@errand/adapter-rabbitmq/RabbitMQBroker"
) {}

/**
 * Connect and build the broker; the connection closes with the scope (consumers cancelled,
 * undelivered prefetched messages requeued, channels and connection closed, bounded in time).
 * Fails with `BrokerError` (`Unauthorized`, `Connection`…) when the first connection fails.
 *
 * @since 0.1.0
 */
export const make = Effect.fnUntraced(function* (options: Options = {}) {
  const refused = checkOptions(options)
  if (refused !== undefined) return yield* refused
  const resolved = resolve(options)
  const endpoint = endpointOf(resolved.url)
  const settings = resolved.settings
  const services = yield* Effect.context<never>()
  const log = (level: "debug" | "warning", message: string) => {
    const line = `@errand/adapter-rabbitmq ${endpoint}: ${message}`
    Effect.runForkWith(services)(level === "debug" ? Effect.logDebug(line) : Effect.logWarning(line))
  }
  const consumers = new Map<string, QueueConsumer>()
  /** Closes of consumers that went idle (no longer in `consumers`), awaited by the layer's close. */
  const idleCloses = new Set<Promise<void>>()

  const client = yield* Effect.acquireRelease(
    Effect.tryPromise({
      try: () =>
        Client.open({
          url: resolved.url,
          socketOptions: resolved.socketOptions,
          connectionName: resolved.connectionName,
          reconnect: resolved.reconnect,
          settings,
          sendTimeout: resolved.sendTimeout,
          connectTimeout: resolved.connectTimeout,
          log
        }),
      catch: toBrokerError("connect", endpoint)
    }),
    (client) =>
      Effect.promise(async () => {
        await Promise.all([...consumers.values()].map((consumer) => consumer.close()))
        consumers.clear()
        await Promise.all(idleCloses)
        await client.close()
      })
  )
  const deadLetters = new DeadLetters.DeadLetters(client)

  const attempt = <A>(operation: string, run: () => Promise<A>): Effect.Effect<A, Errors.BrokerError> =>
    Effect.tryPromise({ try: run, catch: toBrokerError(operation, endpoint) })

  const publicationOf = (queue: string, message: Broker.OutgoingMessage): Publication => {
    const routingKey = message.delay > 0 ? Topology.delayRoutingKey(settings, message.delay) : undefined
    return {
      exchange: routingKey === undefined ? "" : Topology.delayExchange(queue, settings),
      routingKey: routingKey ?? queue,
      body: message.body,
      messageId: message.id,
      priority: message.priority,
      headers: message.group !== undefined ? { [DeadLetters.headers.group]: message.group } : undefined
    }
  }

  const publishMessage = (queue: string, message: Broker.OutgoingMessage): Promise<void> =>
    client.publish(publicationOf(queue, message))

  const consumerOf = (queue: string): QueueConsumer => {
    let consumer = consumers.get(queue)
    if (consumer === undefined) {
      consumer = new QueueConsumer(client, queue, resolved.consumerIdleTimeout, (idle) => {
        if (consumers.get(queue) === idle) consumers.delete(queue)
        const closing = idle
          .close()
          .catch((error: unknown) =>
            log(
              "debug",
              `idle consumer of ${queue} not closed: ${error instanceof Error ? error.message : String(error)}`
            )
          )
          .finally(() => idleCloses.delete(closing))
        idleCloses.add(closing)
      })
      consumers.set(queue, consumer)
    }
    return consumer
  }

  const toDelivery = (queue: string, consumer: QueueConsumer, entry: Entry): Broker.Delivery => {
    const message = entry.message
    const table = message.properties.headers ?? {}
    const deliveryCount = table["x-delivery-count"]
    const receiveCount = typeof deliveryCount === "number" ? deliveryCount + 1 : message.fields.redelivered ? 2 : 1
    const id =
      typeof message.properties.messageId === "string"
        ? message.properties.messageId
        : `${queue}#${entry.generation}.${message.fields.deliveryTag}`
    const priority = typeof message.properties.priority === "number" ? message.properties.priority : 0
    const group = table[DeadLetters.headers.group]

    const settle = (operation: "ack" | "release") =>
      Effect.sync(() => {
        if (!consumer.claim(entry)) return
        if (consumer.settle(entry, operation === "ack" ? "ack" : "requeue") === "stale") {
          log("debug", `${operation} of ${id} dropped: its channel is gone and the broker redelivers it`)
        }
      })

    // Publish a replacement (confirmed) and only then ack the original; on failure the original
    // goes back to the queue so nothing is lost.
    const replace = (operation: string, publish: () => Promise<void>) =>
      Effect.suspend(() => {
        if (!consumer.claim(entry)) return Effect.void
        consumer.beginReplace()
        return attempt(operation, publish).pipe(
          Effect.tap(() => Effect.sync(() => consumer.settle(entry, "ack"))),
          Effect.tapError(() => Effect.sync(() => consumer.settle(entry, "requeue"))),
          Effect.ensuring(Effect.sync(() => consumer.endReplace()))
        )
      })

    return {
      id,
      body: message.content.toString("utf8"),
      receiveCount,
      ack: settle("ack"),
      release: settle("release"),
      retry: ({ body, delay }) =>
        replace("retry", () =>
          publishMessage(queue, {
            id,
            body,
            delay,
            priority,
            ...(typeof group === "string" ? { group } : {})
          })
        ),
      deadLetter: (record) =>
        replace("deadLetter", () =>
          client.publish({
            exchange: "",
            routingKey: Topology.deadLetterQueue(queue),
            body: record.body,
            messageId: id,
            priority: 0,
            headers: DeadLetters.recordHeaders(record, group)
          })
        ),
      extendLease: (ms) => (resolved.leaseExtension ? Effect.sync(() => consumer.lease(entry, ms)) : Effect.void)
    }
  }

  /** Hand out what the running consumer buffered, waiting until `deadline` for a first delivery. */
  const takeFrom = (
    queue: string,
    consumer: QueueConsumer,
    max: number,
    lease: number,
    deadline: number
  ): Effect.Effect<ReadonlyArray<Broker.Delivery>> => {
    // closed as idle while this take was starting it (a start slower than consumerIdleTimeout):
    // nothing to hand out, and the next take starts a new consumer
    if (consumer.isClosed) return Effect.succeed([])
    const drain = Effect.sync(() => consumer.drain(max, lease).map((entry) => toDelivery(queue, consumer, entry)))
    if (consumer.buffered > 0 || deadline <= Date.now()) return drain
    // the consumer's one timer bounds the wait: no timer per take
    return Effect.callback<ReadonlyArray<Broker.Delivery>>((resume) => {
      const unregister = consumer.onArrival(() => resume(drain), deadline)
      return Effect.sync(unregister)
    })
  }

  const take: Broker.BrokerShape["take"] = (queue, { lease, max, wait }) =>
    Effect.suspend(() => {
      if (!(max > 0)) return Effect.succeed([])
      const consumer = consumerOf(queue)
      consumer.touch()
      const deadline = Date.now() + Math.max(0, wait)
      // the prefetch covers what is in flight, this take and the deliveries sent ahead
      const prefetch = consumer.active.size + max + resolved.prefetchAhead
      // the common case: the consumer runs already with a prefetch that covers this take
      if (consumer.isRunning(prefetch)) return takeFrom(queue, consumer, max, lease, deadline)
      // While the broker is away the consumer restarts in the background: wait for it no longer
      // than `wait`, but report a failure that comes within it (a refused declaration…).
      const started = consumer.ensure(prefetch)
      started.catch((error: unknown) =>
        log("debug", `consumer of ${queue} not started: ${error instanceof Error ? error.message : String(error)}`)
      )
      const elapsed = new Error("wait elapsed")
      return attempt("take", () =>
        withTimeout(started, Math.max(1, wait), () => elapsed).catch((error: unknown) => {
          if (error !== elapsed) throw error
        })
      ).pipe(Effect.andThen(Effect.suspend(() => takeFrom(queue, consumer, max, lease, deadline))))
    })

  const scan = (
    operation: string,
    queue: string,
    visit: (entry: Broker.DeadLetterEntry, index: number) => DeadLetters.Decision | Promise<DeadLetters.Decision>
  ) => attempt(operation, () => deadLetters.scan(queue, visit))

  const deadLetterStore: Broker.DeadLetterStore = {
    list: (queue, { limit, offset }) =>
      Effect.suspend(() => {
        const entries: Array<Broker.DeadLetterEntry> = []
        if (!(limit > 0)) return Effect.succeed(entries)
        return scan("deadLetters.list", queue, (entry, index) => {
          if (index >= offset) entries.push(entry)
          return index + 1 >= offset + limit ? "stop" : "keep"
        }).pipe(Effect.as(entries))
      }),
    get: (queue, id) =>
      Effect.suspend(() => {
        let found: Broker.DeadLetterEntry | undefined
        return scan("deadLetters.get", queue, (entry) => {
          if (entry.id !== id) return "keep"
          found = entry
          return "stop"
        }).pipe(Effect.map(() => Option.fromNullishOr(found)))
      }),
    count: (queue) => attempt("deadLetters.count", () => deadLetters.count(queue)),
    redrive: (queue, { ids, prepare }) =>
      Effect.suspend(() => {
        const wanted = ids === undefined ? undefined : new Set(ids)
        let moved = 0
        return scan("deadLetters.redrive", queue, async (entry) => {
          if (wanted !== undefined && !wanted.has(entry.id)) return "keep"
          await publishMessage(queue, prepare(entry))
          moved++
          return "ack"
        }).pipe(Effect.map(() => moved))
      }),
    purge: (queue, ids) =>
      Effect.suspend(() => {
        if (ids === undefined) return attempt("deadLetters.purge", () => deadLetters.purgeAll(queue))
        const wanted = new Set(ids)
        let deleted = 0
        return scan("deadLetters.purge", queue, (entry) => {
          if (!wanted.has(entry.id)) return "keep"
          deleted++
          return "ack"
        }).pipe(Effect.map(() => deleted))
      })
  }

  const stats: Broker.BrokerShape["stats"] = (queue) =>
    attempt("stats", async () => {
      await client.ensureTopology(queue)
      const channel = await client.adminChannel()
      const names = client.names(queue)
      const counts = await Promise.all(
        names.queues.map((name) => channel.checkQueue(name).then((ok) => ok.messageCount))
      )
      const consumer = consumers.get(queue)
      const [ready = 0, dead = 0, ...waiting] = counts
      return {
        waiting: ready + (consumer?.buffered ?? 0),
        active: consumer?.active.size ?? 0,
        delayed: waiting.reduce((sum, count) => sum + count, 0),
        dead
      }
    })

  const deleteQueue: Broker.BrokerShape["deleteQueue"] = (queue) =>
    attempt("deleteQueue", async () => {
      const consumer = consumers.get(queue)
      consumers.delete(queue)
      if (consumer !== undefined) await consumer.close()
      await deadLetters.exclusive(queue, async () => {
        client.forgetTopology(queue)
        const channel = await client.adminChannel()
        const names = client.names(queue)
        await Promise.all(names.queues.map((name) => channel.deleteQueue(name)))
        await Promise.all(names.exchanges.map((name) => channel.deleteExchange(name)))
        client.forgetTopology(queue)
      })
    })

  const sendFailure = toBrokerError("send", endpoint)
  const send: Broker.BrokerShape["send"] = (queue, messages) => {
    if (messages.length === 0) return Effect.succeed([])
    return Effect.callback<ReadonlyArray<Broker.SendResult>, Errors.BrokerError>((resume) => {
      const failed = (error: unknown) => resume(Effect.suspend(() => Effect.fail(sendFailure(error))))
      const publishAll = () => {
        try {
          const publications = new Array<Publication>(messages.length)
          const results = new Array<Broker.SendResult>(messages.length)
          for (let i = 0; i < messages.length; i++) {
            const message = messages[i]!
            publications[i] = publicationOf(queue, message)
            results[i] = { id: message.id, duplicate: false }
          }
          // resume outside amqplib's event handlers (confirms arrive inside its frame parsing)
          client.publishAll(publications, (error) =>
            queueMicrotask(() => (error === undefined ? resume(Effect.succeed(results)) : failed(error)))
          )
        } catch (error) {
          failed(error)
        }
      }
      // the topology is declared once per connection: skip the wait once it is
      if (client.isDeclared(queue)) publishAll()
      else client.ensureTopologyWithin(queue, resolved.sendTimeout).then(publishAll, failed)
    })
  }

  return RabbitMQBroker.of({
    name: "rabbitmq",
    capabilities: capabilitiesFor(options),
    validateQueueName: validateQueueName(options),
    send,
    take,
    deadLetters: deadLetterStore,
    stats,
    deleteQueue,
    endpoint,
    settings,
    tiersFor: (delay) => Topology.tiersFor(settings, delay).map((tier) => Topology.tierTtl(settings, tier)),
    unsafeConsumer: (queue) => {
      const consumer = consumers.get(queue)
      return consumer === undefined ? undefined : { channel: consumer.currentChannel, generation: consumer.generation }
    },
    connectionGeneration: Effect.sync(() => client.connectionGeneration)
  })
})

/**
 * A layer providing both `RabbitMQBroker` and core's `Broker.Broker`.
 *
 * @example
 * ```ts
 * import { RabbitMQBroker } from "@errand/adapter-rabbitmq"
 *
 * const BrokerLive = RabbitMQBroker.layer({ url: "amqp://guest:guest@127.0.0.1:5672", queueType: "quorum" })
 * ```
 *
 * @since 0.1.0
 */
export const layer = (
  options: Options = {}
): Layer.Layer<RabbitMQBroker | Broker.Broker, Errors.BrokerError | Errors.InvalidOption> =>
  Layer.effectContext(
    Effect.map(make(options), (broker) => Context.make(RabbitMQBroker, broker).pipe(Context.add(Broker.Broker, broker)))
  )

/**
 * `layer` with its options read from `Config` (for example `Config.String("AMQP_URL")`).
 *
 * @example
 * ```ts
 * import { Config } from "effect"
 * import { RabbitMQBroker } from "@errand/adapter-rabbitmq"
 *
 * const BrokerLive = RabbitMQBroker.layerConfig({ url: Config.String("AMQP_URL") })
 * ```
 *
 * @since 0.1.0
 */
export const layerConfig = (
  config: Config.Wrap<Options>
): Layer.Layer<RabbitMQBroker | Broker.Broker, Errors.BrokerError | Errors.InvalidOption | Config.ConfigError> =>
  Layer.unwrap(Effect.map(Config.unwrap(config), (options) => layer(options)))
