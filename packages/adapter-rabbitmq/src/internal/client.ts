/**
 * The connection, its shared channels and the confirmed publisher. Promise-based on purpose: it
 * lives at amqplib's event-emitter boundary; `RabbitMQBroker` wraps every call in an Effect.
 *
 * Reconnection: amqplib 2.x brings connection recovery (`recovery` socket option: backoff with
 * jitter, new connection after a loss) but nothing above it — channels, consumers and topology
 * are gone after a loss. This client recreates its channels lazily, forgets the declared topology
 * on every disconnect (so it is declared again), and consumers restart themselves (see
 * `consumer.ts`).
 */
import * as amqp from "amqplib"
import { AdapterFailure, isConnectionFailure } from "./errors.js"
import * as Topology from "./topology.js"

/** What the client needs to know. */
export interface ClientOptions {
  readonly url: string | amqp.Options.Connect
  readonly socketOptions: Record<string, unknown>
  readonly connectionName: string
  readonly reconnect: { readonly initialDelay: number; readonly maxDelay: number }
  readonly settings: Topology.TopologySettings
  /** How long a send (including waiting for a reconnect and retrying) may take, ms. */
  readonly sendTimeout: number
  /** How long to wait for a connection or a channel before failing, ms. */
  readonly connectTimeout: number
  readonly log: (level: "debug" | "warning", message: string) => void
}

/** Properties of one published message. */
export interface PublishProperties {
  readonly messageId: string
  readonly priority: number
  readonly headers: Record<string, unknown>
}

const publishHeader = "x-errand-publish"

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

/** `promise`, or a failure with `reason` after `ms`; `onLate` receives a value that came too late. */
export const withTimeout = <A>(
  promise: Promise<A>,
  ms: number,
  failure: () => Error,
  onLate?: (value: A) => void
): Promise<A> =>
  new Promise<A>((resolve, reject) => {
    let done = false
    const timer = setTimeout(() => {
      done = true
      reject(failure())
    }, ms)
    promise.then(
      (value) => {
        if (done) return onLate?.(value)
        done = true
        clearTimeout(timer)
        resolve(value)
      },
      (error: unknown) => {
        if (done) return
        done = true
        clearTimeout(timer)
        reject(error)
      }
    )
  })

/** The broker connection with its shared admin channel and confirm channel. */
export class Client {
  /** Bumped on every connection loss. */
  connectionGeneration = 0
  closed = false
  private admin: Promise<amqp.Channel> | undefined
  private publisher: Promise<amqp.ConfirmChannel> | undefined
  private readonly topology = new Map<string, Promise<void>>()
  private publishSequence = 0
  private readonly returned = new Set<string>()
  private readonly channels = new Set<amqp.Channel>()
  /** Why the server closed a channel (a channel-level error), if it did. */
  private readonly channelErrors = new WeakMap<amqp.Channel, Error>()

  private constructor(
    readonly options: ClientOptions,
    readonly model: amqp.RecoveringChannelModel
  ) {
    model.on("error", (error: Error) => options.log("warning", `connection error: ${error.message}`))
    model.on("disconnect", () => {
      this.connectionGeneration++
      this.topology.clear()
      this.admin = undefined
      this.publisher = undefined
      options.log("warning", "connection lost; reconnecting")
    })
    model.on("connect", () => options.log("debug", "connected"))
    model.on("blocked", (reason: string) => options.log("warning", `connection blocked by the broker: ${reason}`))
  }

  /** Connect once (failing fast on a refused login or an unreachable broker), recovering afterwards. */
  static async open(options: ClientOptions): Promise<Client> {
    const model = await amqp.connect(options.url, {
      // small frames (a publish, an ack) must not wait for Nagle's algorithm and the peer's delayed
      // ACK (~40 ms); RabbitMQ itself sets TCP_NODELAY on its side. `socketOptions` can override.
      noDelay: true,
      ...options.socketOptions,
      clientProperties: { connection_name: options.connectionName },
      recovery: {
        initialDelay: options.reconnect.initialDelay,
        maxDelay: options.reconnect.maxDelay,
        initialMaxRetries: 0
      }
    })
    return new Client(options, model)
  }

  private notConnected = (): Error =>
    new AdapterFailure("Connection", `not connected within ${this.options.connectTimeout} ms`)

  /** A fresh channel (waits for a reconnect, bounded by `connectTimeout`). Errors are handled, never thrown. */
  async channel(): Promise<amqp.Channel> {
    if (this.closed) throw new AdapterFailure("Connection", "the broker layer was closed")
    const channel = await withTimeout(
      this.model.createChannel(),
      this.options.connectTimeout,
      this.notConnected,
      (late) => {
        void late.close().catch(() => {})
      }
    )
    return this.track(channel)
  }

  private track<C extends amqp.Channel>(channel: C): C {
    this.channels.add(channel)
    channel.on("error", (error: Error) => {
      this.channelErrors.set(channel, error)
      this.options.log("debug", `channel error: ${error.message}`)
    })
    channel.on("close", () => this.channels.delete(channel))
    return channel
  }

  /** The shared channel for declarations and checks, recreated after it closed. */
  adminChannel(): Promise<amqp.Channel> {
    if (this.admin === undefined) {
      const created = this.channel()
      this.admin = created
      created.then(
        (channel) =>
          channel.on("close", () => {
            if (this.admin === created) this.admin = undefined
          }),
        () => {
          if (this.admin === created) this.admin = undefined
        }
      )
    }
    return this.admin
  }

  /** The shared confirm channel, recreated after it closed. */
  publisherChannel(): Promise<amqp.ConfirmChannel> {
    if (this.publisher === undefined) {
      if (this.closed) return Promise.reject(new AdapterFailure("Connection", "the broker layer was closed"))
      const created = withTimeout(
        this.model.createConfirmChannel(),
        this.options.connectTimeout,
        this.notConnected,
        (late) => {
          void late.close().catch(() => {})
        }
      ).then((channel) => {
        this.track(channel)
        channel.on("return", (message: amqp.Message) => {
          const id = message.properties.headers?.[publishHeader]
          if (typeof id === "string") this.returned.add(id)
        })
        channel.on("close", () => {
          if (this.publisher === created) this.publisher = undefined
        })
        return channel
      })
      this.publisher = created
      created.catch(() => {
        if (this.publisher === created) this.publisher = undefined
      })
    }
    return this.publisher
  }

  /** Declare the queue's topology once per connection (forgotten on disconnect). */
  ensureTopology(queue: string): Promise<void> {
    let declared = this.topology.get(queue)
    if (declared === undefined) {
      declared = this.declare(queue)
      this.topology.set(queue, declared)
      declared.catch(() => {
        if (this.topology.get(queue) === declared) this.topology.delete(queue)
      })
    }
    return declared
  }

  /** `ensureTopology`, retried across a reconnect until `timeout` ms have passed. */
  async ensureTopologyWithin(queue: string, timeout: number): Promise<void> {
    const deadline = Date.now() + timeout
    let backoff = 50
    for (;;) {
      try {
        return await withTimeout(
          this.ensureTopology(queue),
          Math.max(1, deadline - Date.now()),
          () => new AdapterFailure("Connection", `not connected within ${timeout} ms`)
        )
      } catch (error) {
        if (this.closed || !isConnectionFailure(error) || Date.now() + backoff >= deadline) throw error
        await sleep(backoff)
        backoff = Math.min(backoff * 2, 1000)
      }
    }
  }

  /** Forget that `queue` was declared (after deleting it). */
  forgetTopology(queue: string): void {
    this.topology.delete(queue)
  }

  private async declare(queue: string): Promise<void> {
    const settings = this.options.settings
    const channel = await this.adminChannel()
    const tiers = Array.from({ length: settings.tiers }, (_, tier) => tier)
    // amqplib pipelines these RPCs on the channel; waiting per group keeps the order that matters
    // (exchanges and queues exist before they are bound).
    await Promise.all([
      channel.assertQueue(queue, Topology.workQueueOptions(settings)),
      channel.assertQueue(Topology.deadLetterQueue(queue), Topology.deadLetterQueueOptions(settings)),
      ...tiers.map((tier) =>
        channel.assertExchange(Topology.routeExchange(queue, settings, tier), "topic", { durable: true })
      ),
      ...tiers.map((tier) =>
        channel.assertQueue(Topology.waitQueue(queue, settings, tier), Topology.waitQueueOptions(queue, settings, tier))
      )
    ])
    await Promise.all(
      Topology.bindings(queue, settings).map((binding) =>
        binding.kind === "queue"
          ? channel.bindQueue(binding.destination, binding.exchange, binding.pattern)
          : channel.bindExchange(binding.destination, binding.exchange, binding.pattern)
      )
    )
  }

  /** Every queue and exchange of `queue`'s topology, for deletion and stats. */
  names(queue: string): { readonly queues: ReadonlyArray<string>; readonly exchanges: ReadonlyArray<string> } {
    const settings = this.options.settings
    const tiers = Array.from({ length: settings.tiers }, (_, tier) => tier)
    return {
      queues: [
        queue,
        Topology.deadLetterQueue(queue),
        ...tiers.map((tier) => Topology.waitQueue(queue, settings, tier))
      ],
      exchanges: tiers.map((tier) => Topology.routeExchange(queue, settings, tier))
    }
  }

  /** Publish one message on `channel`, mandatory; resolves once the broker confirmed it (or fails after `timeout`). */
  private publishOn(
    channel: amqp.ConfirmChannel,
    exchange: string,
    routingKey: string,
    content: Buffer,
    properties: PublishProperties,
    timeout: number
  ): Promise<void> {
    const id = `${this.connectionGeneration}.${++this.publishSequence}`
    return withTimeout(
      new Promise<void>((resolve, reject) => {
        channel.publish(
          exchange,
          routingKey,
          content,
          {
            mandatory: true,
            persistent: true,
            contentType: "application/json",
            messageId: properties.messageId,
            priority: properties.priority,
            timestamp: Math.floor(Date.now() / 1000),
            headers: { ...properties.headers, [publishHeader]: id }
          },
          (error: unknown) => {
            // RabbitMQ sends basic.return before the basic.ack of the same message.
            const wasReturned = this.returned.delete(id)
            if (error !== null && error !== undefined) {
              // The server closed the channel because of a message (too large, missing exchange):
              // report that, not a retryable connection loss.
              const closedBy = this.channelErrors.get(channel)
              if (closedBy !== undefined) return reject(closedBy)
              const message = error instanceof Error ? error.message : String(error)
              return reject(
                /nack/iu.test(message)
                  ? new AdapterFailure("Unknown", "the broker refused (nacked) the message")
                  : new AdapterFailure("Connection", `the channel closed before the broker confirmed: ${message}`)
              )
            }
            if (wasReturned) {
              return reject(
                new AdapterFailure(
                  "Unroutable",
                  `the message was returned unroutable (exchange ${JSON.stringify(exchange)}, routing key ${JSON.stringify(
                    routingKey
                  )})`
                )
              )
            }
            resolve()
          }
        )
      }),
      timeout,
      () => new AdapterFailure("Timeout", `no publisher confirm within ${this.options.sendTimeout} ms`)
    )
  }

  /**
   * Publish through the confirm channel with `mandatory`; resolves once the broker confirmed.
   * After a connection loss, waits for the reconnect and publishes again, all within
   * `sendTimeout`. A retry can duplicate a message whose confirm was lost (at-least-once); nothing
   * is published once the deadline has passed.
   */
  async publish(exchange: string, routingKey: string, content: Buffer, properties: PublishProperties): Promise<void> {
    const deadline = Date.now() + this.options.sendTimeout
    let backoff = 50
    for (;;) {
      try {
        const channel = await withTimeout(
          this.publisherChannel(),
          Math.max(1, deadline - Date.now()),
          () => new AdapterFailure("Connection", `not connected within ${this.options.sendTimeout} ms`)
        )
        const remaining = deadline - Date.now()
        if (remaining <= 0)
          throw new AdapterFailure("Connection", `not connected within ${this.options.sendTimeout} ms`)
        return await this.publishOn(channel, exchange, routingKey, content, properties, remaining)
      } catch (error) {
        if (this.closed || !isConnectionFailure(error) || Date.now() + backoff >= deadline) throw error
        this.options.log("debug", "publish failed on a lost connection; retrying")
        await sleep(backoff)
        backoff = Math.min(backoff * 2, 1000)
      }
    }
  }

  /** Close every channel and the connection; never hangs (bounded waits). */
  async close(): Promise<void> {
    if (this.closed) return
    this.closed = true
    await Promise.all(
      [...this.channels].map((channel) =>
        withTimeout(channel.close(), 2000, () => new Error("timeout")).catch(() => {})
      )
    )
    await withTimeout(this.model.close(), 5000, () => new Error("timeout")).catch(() => {})
  }
}
