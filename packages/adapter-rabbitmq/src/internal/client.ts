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
import { DeadlineTimer } from "./deadlineTimer.js"
import { AdapterFailure, isConnectionFailure } from "./errors.js"
import { FrameWriter } from "./frames.js"
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

/** One published message: persistent, JSON, mandatory. */
export interface Publication {
  readonly exchange: string
  readonly routingKey: string
  /** The body, sent as UTF-8. */
  readonly body: string
  readonly messageId: string
  /** 0 sends no priority property (the queue reads it as 0). */
  readonly priority: number
  /** Omitted (no header table to encode and decode) when there are none. */
  readonly headers?: Record<string, unknown> | undefined
}

// A `basic.return` is matched to its publish by exchange, routing key and message id (RabbitMQ
// sends it before the publish's confirm). Two publishes in flight with the same three would go to
// the same queues, so they are returned alike and telling them apart does not matter.
const returnKey = (exchange: string, routingKey: string, messageId: unknown): string =>
  `${exchange}\u0000${routingKey}\u0000${String(messageId)}`

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

/**
 * amqplib's multiplexer hands every frame (a publish, an ack) to the socket on its own: one
 * syscall each. Corking the socket for one multiplexer round turns the round into one `writev`;
 * the frames and their order are unchanged. Applied to every (re)connection, and only when
 * amqplib's internals have the expected shape (otherwise nothing changes).
 */
const coalesceWrites = (model: unknown): void => {
  const connection = (model as { readonly connection?: { readonly muxer?: unknown } } | undefined)?.connection
  const muxer = connection?.muxer as { _readIncoming?: unknown; readonly out?: unknown } | undefined
  const out = muxer?.out as { readonly cork?: unknown; readonly uncork?: unknown } | undefined
  if (muxer === undefined || out === undefined) return
  const readIncoming = muxer._readIncoming
  const cork = out.cork
  const uncork = out.uncork
  if (typeof readIncoming !== "function" || typeof cork !== "function" || typeof uncork !== "function") return
  muxer._readIncoming = function (this: unknown) {
    cork.call(out)
    try {
      readIncoming.call(this)
    } finally {
      uncork.call(out)
    }
  }
}

/**
 * Whether the channel error `error` may have been caused by `publication`. RabbitMQ does not say
 * which publish it refused, but its message names the missing exchange or the size limit; an
 * error that names neither is taken to concern every message in flight.
 */
export const refuses = (error: Error, publication: Publication): boolean => {
  const exchange = /no exchange '((?:[^']|'(?! in vhost))*)' in vhost/u.exec(error.message)
  if (exchange !== null) return exchange[1] === publication.exchange
  const size = /larger than configured max size (\d+)/u.exec(error.message)
  if (size !== null) return Buffer.byteLength(publication.body, "utf8") > Number(size[1])
  return true
}

/** A send's deadline (epoch ms) and what to do when it passes (or the client closes first). */
interface Deadline {
  readonly deadline: number
  readonly expire: (error: Error) => void
}

/** The broker connection with its shared admin channel and confirm channel. */
export class Client {
  /** Bumped on every connection loss. */
  connectionGeneration = 0
  closed = false
  private admin: Promise<amqp.Channel> | undefined
  private publisher: Promise<amqp.ConfirmChannel> | undefined
  private readonly topology = new Map<string, Promise<void>>()
  /** Queues whose topology is declared on the current connection (the settled part of `topology`). */
  private readonly declared = new Set<string>()
  /** The publisher channel once it is open, until it closes: lets a publish skip the promise. */
  private openPublisher: amqp.ConfirmChannel | undefined
  /** Direct publishes to a confirm channel (undefined: through amqplib's `publish`). */
  private readonly writers = new WeakMap<amqp.ConfirmChannel, FrameWriter | undefined>()
  /** Returned publishes by `returnKey` (counts), per channel, until their confirm arrives. */
  private readonly returned = new WeakMap<amqp.Channel, Map<string, number>>()
  private readonly channels = new Set<amqp.Channel>()
  /**
   * Queues found to exist without a storage version while version 2 is configured: declared
   * without `x-queue-version` from then on (kept across reconnects, dropped by `forgetTopology`).
   */
  private readonly unversioned = new Set<string>()
  /** Why the server closed a channel (a channel-level error), if it did. */
  private readonly channelErrors = new WeakMap<amqp.Channel, Error>()
  /** Sends waiting for their confirms, by deadline: one timer for all of them, not one per send. */
  private readonly deadlines = new Set<Deadline>()
  // unref: the sends themselves hold the event loop open (their socket, a reconnect's timers)
  private readonly deadlineTimer = new DeadlineTimer((now) => this.expireDeadlines(now), true)

  private constructor(
    readonly options: ClientOptions,
    readonly model: amqp.RecoveringChannelModel
  ) {
    model.on("error", (error: Error) => options.log("warning", `connection error: ${error.message}`))
    model.on("disconnect", () => {
      this.connectionGeneration++
      this.topology.clear()
      this.declared.clear()
      this.admin = undefined
      this.publisher = undefined
      this.openPublisher = undefined
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
        initialMaxRetries: 0,
        setup: (model: amqp.ChannelModel) => coalesceWrites(model)
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
        const returned = new Map<string, number>()
        this.returned.set(channel, returned)
        this.writers.set(channel, FrameWriter.of(channel))
        channel.on("return", (message: amqp.Message) => {
          const key = returnKey(message.fields.exchange, message.fields.routingKey, message.properties.messageId)
          returned.set(key, (returned.get(key) ?? 0) + 1)
        })
        channel.on("close", () => {
          if (this.publisher === created) this.publisher = undefined
          if (this.openPublisher === channel) this.openPublisher = undefined
        })
        if (this.publisher === created && !this.closed) this.openPublisher = channel
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
      const current = this.declare(queue)
      declared = current
      this.topology.set(queue, current)
      current.then(
        () => {
          if (this.topology.get(queue) === current) this.declared.add(queue)
        },
        () => {
          if (this.topology.get(queue) === current) this.topology.delete(queue)
        }
      )
    }
    return declared
  }

  /** Whether `queue`'s topology is known to be declared on the current connection. */
  isDeclared(queue: string): boolean {
    return this.declared.has(queue)
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
    this.declared.delete(queue)
    // a queue deleted and created again gets the configured storage version
    for (const name of this.names(queue).queues) this.unversioned.delete(name)
  }

  private async declare(queue: string): Promise<void> {
    const settings = this.options.settings
    const queues = Topology.queueDeclarations(queue, settings)
    const exchanges = Array.from({ length: settings.tiers }, (_, tier) => Topology.routeExchange(queue, settings, tier))
    // amqplib sends a channel's RPCs one after another; awaiting them all before the bindings keeps
    // the order that matters (exchanges and queues exist before they are bound). RabbitMQ answers
    // in order, so the first refusal is the cause and the later ones only found the channel closed.
    const declareAll = async (channel: amqp.Channel) => {
      const declared = await Promise.allSettled([
        ...queues.map(([name, options]) =>
          channel.assertQueue(name, this.unversioned.has(name) ? Topology.withoutQueueVersion(options) : options)
        ),
        ...exchanges.map((exchange) => channel.assertExchange(exchange, "topic", { durable: true }))
      ])
      return declared.find((result): result is PromiseRejectedResult => result.status === "rejected")
    }
    // A channel of its own rather than the shared admin channel: a refusal closes the channel it
    // happens on, and a queue created without a storage version is refused once (below), which
    // must not fail the checks other callers have queued on the admin channel.
    let channel = await this.channel()
    try {
      for (;;) {
        const refused = await declareAll(channel)
        if (refused === undefined) break
        // A queue created before storage versions were declared (an earlier Errand, another
        // client) keeps the version it has: remembered, and declared again without the argument.
        const unversioned = Topology.unversionedQueueIn(refused.reason)
        if (unversioned === undefined || this.unversioned.has(unversioned)) throw refused.reason
        this.unversioned.add(unversioned)
        channel = await this.channel()
      }
      await this.bind(channel, queue)
    } finally {
      void channel.close().catch(() => {})
    }
  }

  private async bind(channel: amqp.Channel, queue: string): Promise<void> {
    await Promise.all(
      Topology.bindings(queue, this.options.settings).map((binding) =>
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

  /** Whether a `basic.return` came for `publication` on `channel` (consumed if so). */
  private takeReturn(channel: amqp.Channel, publication: Publication): boolean {
    const returned = this.returned.get(channel)
    if (returned === undefined || returned.size === 0) return false
    const key = returnKey(publication.exchange, publication.routingKey, publication.messageId)
    const count = returned.get(key)
    if (count === undefined) return false
    if (count > 1) returned.set(key, count - 1)
    else returned.delete(key)
    return true
  }

  /**
   * The outcome of publishing `publication` on `channel`: `undefined` when the broker confirmed it
   * and routed it, else the failure. `thrown`: amqplib threw before sending it.
   */
  private outcome(channel: amqp.ConfirmChannel, publication: Publication, error: unknown, thrown: boolean) {
    // RabbitMQ sends basic.return before the basic.ack of the same message.
    const wasReturned = this.takeReturn(channel, publication)
    if (error !== null && error !== undefined) {
      const message = error instanceof Error ? error.message : String(error)
      const nacked = /nack/iu.test(message)
      // Anything but a nack means the channel is closing: forget it now, since the caller may
      // publish again (synchronously) before its "close" event reaches the listener above.
      if (!nacked && this.openPublisher === channel && (!thrown || isConnectionFailure(error))) {
        this.openPublisher = undefined
        this.publisher = undefined
      }
      // thrown by amqplib itself (a closed channel, an unencodable message): as it is
      if (thrown) return error instanceof Error ? error : new Error(message)
      // The server closed the channel because of a message (too large, missing exchange): report
      // that to the message's send, not a retryable connection loss. The other messages in flight
      // on the channel lost their confirms with it: they are retried on a new channel.
      const closedBy = this.channelErrors.get(channel)
      if (closedBy !== undefined) {
        if (refuses(closedBy, publication)) return closedBy
        return new AdapterFailure(
          "Connection",
          `the channel closed before the broker confirmed, refusing another message: ${closedBy.message}`
        )
      }
      return nacked
        ? new AdapterFailure("Unknown", "the broker refused (nacked) the message")
        : new AdapterFailure("Connection", `the channel closed before the broker confirmed: ${message}`)
    }
    if (wasReturned) {
      return new AdapterFailure(
        "Unroutable",
        `the message was returned unroutable (exchange ${JSON.stringify(publication.exchange)}, routing key ${JSON.stringify(
          publication.routingKey
        )})`
      )
    }
    return undefined
  }

  /**
   * Publish `publications` on `channel`, mandatory, in order; `done` runs once per message, with
   * `undefined` when the broker confirmed it and routed it, else with the failure.
   */
  private publishRaw(
    channel: amqp.ConfirmChannel,
    publications: ReadonlyArray<Publication>,
    done: (error: Error | undefined, publication: Publication) => void
  ): void {
    const writer = this.writers.get(channel)
    const direct = writer !== undefined && writer.open
    for (const publication of publications) {
      let called = false
      const confirmed = (error: unknown): void => {
        if (called) return
        called = true
        done(this.outcome(channel, publication, error, false), publication)
      }
      if (direct && publication.headers === undefined && writer.add(publication, confirmed)) continue
      // frames encoded directly go first: the confirm window follows the order on the wire
      if (direct) writer.flush()
      const options: amqp.Options.Publish = {
        mandatory: true,
        persistent: true,
        contentType: "application/json",
        messageId: publication.messageId,
        headers: publication.headers
      }
      if (publication.priority > 0) options.priority = publication.priority
      try {
        channel.publish(
          publication.exchange,
          publication.routingKey,
          Buffer.from(publication.body, "utf8"),
          options,
          confirmed
        )
      } catch (error) {
        // a closed channel (or an unencodable message) throws before it registers the callback
        called = true
        done(this.outcome(channel, publication, error, true), publication)
      }
    }
    if (direct) writer.flush()
  }

  private timedOut = (): Error =>
    new AdapterFailure("Timeout", `no publisher confirm within ${this.options.sendTimeout} ms`)

  /** `publishRaw` as a promise that fails after `timeout` ms without a confirm. */
  private publishOn(channel: amqp.ConfirmChannel, publication: Publication, timeout: number): Promise<void> {
    return withTimeout(
      new Promise<void>((resolve, reject) => {
        this.publishRaw(channel, [publication], (error) => (error === undefined ? resolve() : reject(error)))
      }),
      timeout,
      this.timedOut
    )
  }

  /**
   * Publish through the confirm channel with `mandatory`; resolves once the broker confirmed.
   * After a connection loss, waits for the reconnect and publishes again, all within
   * `sendTimeout` (or until `deadline`). A retry can duplicate a message whose confirm was lost
   * (at-least-once); nothing is published once the deadline has passed.
   */
  async publish(publication: Publication, deadline = Date.now() + this.options.sendTimeout): Promise<void> {
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
        return await this.publishOn(channel, publication, remaining)
      } catch (error) {
        if (this.closed || !isConnectionFailure(error) || Date.now() + backoff >= deadline) throw error
        this.options.log("debug", "publish failed on a lost connection; retrying")
        await sleep(backoff)
        backoff = Math.min(backoff * 2, 1000)
      }
    }
  }

  /**
   * `publish` for many messages at once; resolves once the broker confirmed every one, fails with
   * the first failure that a retry cannot fix. With the publisher channel open, every message
   * goes out at once under one deadline timer (once the channel is open); a message
   * whose channel was lost is published again (`publish`) within the same `sendTimeout`.
   */
  publishAll(
    publications: ReadonlyArray<Publication>,
    done: (error: unknown) => void,
    deadline = Date.now() + this.options.sendTimeout
  ): void {
    const publishEach = (list: ReadonlyArray<Publication>) =>
      Promise.all(list.map((publication) => this.publish(publication, deadline))).then(() => done(undefined), done)
    const channel = this.openPublisher
    if (channel === undefined || this.closed) {
      if (this.closed) return void publishEach(publications)
      // open the channel (or wait for the one being opened), then publish the batch at once;
      // `publish` retries one by one if that fails
      return void withTimeout(this.publisherChannel(), Math.max(1, deadline - Date.now()), this.notConnected).then(
        () =>
          this.openPublisher !== undefined && Date.now() < deadline
            ? this.publishAll(publications, done, deadline)
            : publishEach(publications),
        () => publishEach(publications)
      )
    }
    let pending = publications.length
    let finished = false
    let retry: Array<Publication> | undefined
    let lost: Error | undefined
    const watch = this.watch(deadline, (error) => {
      finished = true
      done(error)
    })
    const settled = () => {
      if (--pending > 0 || finished) return
      finished = true
      this.deadlines.delete(watch)
      if (retry === undefined) return done(undefined)
      const again = retry
      this.options.log("debug", "publish failed on a lost connection; retrying")
      if (Date.now() + 50 >= deadline) return done(lost)
      void sleep(50).then(() => publishEach(again))
    }
    const confirmed = (error: Error | undefined, publication: Publication) => {
      if (error === undefined) return settled()
      if (finished) return
      if (this.closed || !isConnectionFailure(error)) {
        finished = true
        this.deadlines.delete(watch)
        return done(error)
      }
      lost ??= error
      ;(retry ??= []).push(publication)
      settled()
    }
    this.publishRaw(channel, publications, confirmed)
  }

  /** Call `expire` once `deadline` (epoch ms) has passed, unless the watch is deleted before. */
  private watch(deadline: number, expire: (error: Error) => void): Deadline {
    const watch: Deadline = { deadline, expire }
    this.deadlines.add(watch)
    this.deadlineTimer.schedule(deadline)
    return watch
  }

  /** Expire every watch whose deadline passed; the next deadline. */
  private expireDeadlines(now: number): number {
    let next = Infinity
    for (const watch of [...this.deadlines]) {
      if (watch.deadline <= now) {
        this.deadlines.delete(watch)
        watch.expire(this.timedOut())
      } else if (watch.deadline < next) next = watch.deadline
    }
    return next
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
    // Sends still unanswered (a server that stopped answering closes without amqplib's close
    // events) are answered now rather than left waiting for a timer that is gone.
    this.deadlineTimer.cancel()
    const left = [...this.deadlines]
    this.deadlines.clear()
    const closed = new AdapterFailure("Connection", "the connection was closed before the broker confirmed")
    for (const watch of left) watch.expire(closed)
  }
}
