/**
 * One consumer per work queue, on its own channel, buffering deliveries for `take`.
 *
 * Every channel the consumer opens gets a new generation; a delivery remembers the generation
 * (and channel) it came from. A settle for a delivery whose channel died is dropped locally: the
 * broker already requeued the message, and sending the stale delivery tag on the new channel would
 * make RabbitMQ close that channel too (PRECONDITION_FAILED, unknown delivery tag) and redeliver
 * everything it holds.
 *
 * Acks are coalesced: the acks of one synchronous run (or, while the broker has prefetch slots to
 * fill, of one turn of the event loop) go out together, as one `basic.ack` with `multiple` for
 * those below the oldest delivery still unsettled on the channel, and one each for the rest.
 * `multiple` never covers a delivery that was not acked: the consumer knows every delivery of its
 * channel that has no settle sent yet. They are encoded here and written to the socket at once
 * when amqplib has nothing of the channel queued (see `frames.ts`).
 */
import type * as amqp from "amqplib"
import type { Client } from "./client.js"
import { sleep, withTimeout } from "./client.js"
import { DeadlineTimer } from "./deadlineTimer.js"
import { ChannelOutput, encodeAcks } from "./frames.js"

/** One message delivered to this process. */
export interface Entry {
  readonly message: amqp.ConsumeMessage
  readonly channel: amqp.Channel
  readonly generation: number
  state: "buffered" | "active" | "settled"
  /** When the lease runs out (epoch ms) and the delivery goes back to the queue; set while active. */
  leaseDeadline: number
  /** Whether its ack or nack went to the channel (or was dropped as stale). */
  sent: boolean
}

/** A `take` waiting for a delivery. */
interface Waiter {
  readonly wake: () => void
  /** When it stops waiting (epoch ms). */
  readonly deadline: number
}

/** The result of a settle attempt. */
export type SettleResult = "sent" | "stale" | "already-settled"

const maxPrefetch = 65535

/** The consumer of one work queue. */
export class QueueConsumer {
  /** Bumped for every channel this consumer opens. */
  generation = 0
  /** Deliveries handed out by `take` and not yet settled. */
  readonly active = new Set<Entry>()
  private channel: amqp.Channel | undefined
  /** Direct writes to the live channel (undefined: acks go through amqplib's `ack`). */
  private output: ChannelOutput | undefined
  private consumerTag: string | undefined
  private prefetch = 0
  private buffer: Array<Entry> = []
  private readonly waiters = new Set<Waiter>()
  private wakeScheduled = false
  /** One timer for every waiter's deadline, never one per take. */
  private readonly waitTimer = new DeadlineTimer((now) => this.sweepWaiters(now), false)
  /** One timer for every lease. */
  private readonly leaseTimer = new DeadlineTimer((now) => this.sweepLeases(now), true)
  private starting: Promise<void> | undefined
  private closed = false
  private restarting = false
  /**
   * The live channel's deliveries in delivery-tag order, from the oldest one without a settle sent
   * (`unsentHead`) on; `unsentCount` of them have none. Tells how far an ack may use `multiple`.
   */
  private unsent: Array<Entry> = []
  private unsentHead = 0
  private unsentCount = 0
  /** Acks waiting for the end of the current synchronous run. */
  private pendingAcks: Array<Entry> = []
  /** Scratch space of `flushAcks`. */
  private readonly ackScratch: Array<amqp.Message> = []

  /** When a take last asked this consumer for deliveries (epoch ms). */
  private lastDemand = Date.now()
  /** Looks for a consumer no take uses any more (a worker stopped while the layer lives on). */
  private readonly idleTimer = new DeadlineTimer((now) => this.sweepIdle(now), true)

  /**
   * @param onIdle called once when no take has asked for deliveries for `idleTimeout` ms while
   *   none is handed out, waited for or being replaced: the owner closes the consumer, which
   *   returns what it buffered to the queue (the next take starts a new one).
   */
  constructor(
    private readonly client: Client,
    readonly queue: string,
    private readonly idleTimeout: number = Infinity,
    private readonly onIdle: (consumer: QueueConsumer) => void = () => {}
  ) {}

  /**
   * Claimed deliveries whose replacement is still being published (a retry or a dead-letter: the
   * original is acked only once the replacement is confirmed). They are no longer `active`, but
   * closing the channel now would requeue the original next to its replacement.
   */
  private replacing = 0

  /** A take asks for deliveries: the consumer is in use. */
  touch(): void {
    this.lastDemand = Date.now()
    if (Number.isFinite(this.idleTimeout)) this.idleTimer.schedule(this.lastDemand + this.idleTimeout)
  }

  /** Whether the consumer was closed (for good: a later take uses a new one). */
  get isClosed(): boolean {
    return this.closed
  }

  /** A replacement of a claimed delivery is being published (see `replacing`). */
  beginReplace(): void {
    this.replacing++
  }

  /** The replacement was confirmed or failed, and the original settled. */
  endReplace(): void {
    this.replacing--
    this.lastDemand = Date.now()
  }

  /**
   * Hand the consumer to `onIdle` once no take has used it for `idleTimeout` and none of its
   * deliveries is handed out, waited for or being replaced; else look again later.
   */
  private sweepIdle(now: number): number {
    if (this.closed) return Infinity
    if (this.waiters.size > 0 || this.active.size > 0 || this.replacing > 0) this.lastDemand = now
    const idleAt = this.lastDemand + this.idleTimeout
    if (idleAt > now) return idleAt
    this.onIdle(this)
    return Infinity
  }

  /** Deliveries received and not yet handed out. */
  get buffered(): number {
    return this.buffer.length
  }

  /** The live channel, for diagnostics and tests. */
  get currentChannel(): amqp.Channel | undefined {
    return this.channel
  }

  /** Whether a consumer runs with a prefetch of at least `prefetch` (`ensure` would do nothing). */
  isRunning(prefetch: number): boolean {
    return (
      this.channel !== undefined &&
      this.starting === undefined &&
      !this.closed &&
      Math.min(maxPrefetch, Math.max(1, prefetch)) <= this.prefetch
    )
  }

  /** Make sure a consumer runs with a prefetch of at least `prefetch`. */
  async ensure(prefetch: number): Promise<void> {
    const wanted = Math.min(maxPrefetch, Math.max(1, prefetch, this.prefetch))
    while (this.starting !== undefined) await this.starting.catch(() => {})
    if (this.closed) return
    if (this.channel !== undefined && wanted <= this.prefetch) return
    const started = this.channel === undefined ? this.start(wanted) : this.raisePrefetch(this.channel, wanted)
    this.starting = started
    try {
      await started
    } finally {
      this.starting = undefined
    }
  }

  private async start(prefetch: number): Promise<void> {
    const channel = await this.client.channel()
    const generation = ++this.generation
    this.unsent = []
    this.unsentHead = 0
    this.unsentCount = 0
    channel.on("close", () => this.onChannelClosed(channel, generation))
    try {
      await this.client.ensureTopology(this.queue)
      await channel.prefetch(prefetch)
      const reply = await channel.consume(this.queue, (message) => this.onMessage(channel, generation, message), {
        noAck: false
      })
      if (this.closed) {
        await channel.close().catch(() => {})
        return
      }
      this.channel = channel
      this.output = ChannelOutput.of(channel)
      this.consumerTag = reply.consumerTag
      this.prefetch = prefetch
    } catch (error) {
      // The queue may have been deleted behind our back: declare it again next time.
      this.client.forgetTopology(this.queue)
      await channel.close().catch(() => {})
      throw error
    }
  }

  // RabbitMQ applies a per-consumer prefetch to consumers created after basic.qos, so raising it
  // means consuming again on the same channel (unacked deliveries stay valid there).
  private async raisePrefetch(channel: amqp.Channel, prefetch: number): Promise<void> {
    await channel.prefetch(prefetch)
    const generation = this.generation
    const reply = await channel.consume(this.queue, (message) => this.onMessage(channel, generation, message), {
      noAck: false
    })
    const old = this.consumerTag
    this.consumerTag = reply.consumerTag
    this.prefetch = prefetch
    if (old !== undefined) await channel.cancel(old)
  }

  private onMessage(channel: amqp.Channel, generation: number, message: amqp.ConsumeMessage | null): void {
    if (message === null) {
      // Cancelled by the broker (queue deleted): start over, which declares the queue again.
      if (generation === this.generation && !this.closed) {
        this.client.forgetTopology(this.queue)
        void channel.close().catch(() => {})
      }
      return
    }
    if (this.closed || generation !== this.generation) {
      try {
        channel.nack(message, false, true)
      } catch {
        // channel already gone: the broker requeues it
      }
      return
    }
    const entry: Entry = { message, channel, generation, state: "buffered", leaseDeadline: Infinity, sent: false }
    this.buffer.push(entry)
    this.unsent.push(entry)
    this.unsentCount++
    // amqplib hands over every delivery of one socket read synchronously: wake the waiting takes
    // once they all are buffered, so one take gets them all.
    if (this.waiters.size > 0 && !this.wakeScheduled) {
      this.wakeScheduled = true
      queueMicrotask(this.wakeAll)
    }
  }

  private readonly wakeAll = (): void => {
    this.wakeScheduled = false
    // a woken take drains the buffer before its wake returns; a later waiter keeps waiting when
    // nothing is left (one registered meanwhile is visited too, and finds what is left)
    for (const waiter of this.waiters) {
      if (this.buffer.length === 0) return
      this.waiters.delete(waiter)
      waiter.wake()
    }
  }

  private onChannelClosed(channel: amqp.Channel, generation: number): void {
    if (generation !== this.generation) return
    if (this.channel === channel) {
      this.channel = undefined
      this.output = undefined
    }
    this.consumerTag = undefined
    // The broker requeues everything this channel held; forget the local copies.
    this.buffer = this.buffer.filter((entry) => entry.generation !== generation)
    if (!this.closed) void this.restart()
  }

  private async restart(): Promise<void> {
    if (this.restarting) return
    this.restarting = true
    let backoff = 100
    try {
      while (!this.closed && this.channel === undefined) {
        try {
          await this.ensure(this.prefetch)
        } catch (error) {
          this.client.options.log(
            "debug",
            `consumer of ${this.queue} could not restart: ${error instanceof Error ? error.message : String(error)}`
          )
          await sleep(backoff)
          backoff = Math.min(backoff * 2, this.client.options.reconnect.maxDelay)
        }
      }
    } finally {
      this.restarting = false
    }
  }

  /**
   * Hand out up to `max` buffered deliveries (they become active), each leased for `lease` ms:
   * AMQP has no lease, so the adapter keeps it — a delivery still unsettled when its lease runs
   * out is nacked back to the queue, and its later settles are dropped.
   */
  drain(max: number, lease: number): ReadonlyArray<Entry> {
    const taken = this.buffer.splice(0, Math.max(0, max))
    for (const entry of taken) {
      entry.state = "active"
      this.active.add(entry)
      this.lease(entry, lease)
    }
    return taken
  }

  /** (Re)start the lease of an active delivery. */
  lease(entry: Entry, ms: number): void {
    if (entry.state !== "active") return
    if (!Number.isFinite(ms)) {
      entry.leaseDeadline = Infinity
      return
    }
    const at = Date.now() + Math.max(0, ms)
    entry.leaseDeadline = at
    this.leaseTimer.schedule(at)
  }

  /** Return every delivery whose lease ran out; the next lease deadline. */
  private sweepLeases(now: number): number {
    let next = Infinity
    for (const entry of this.active) {
      if (entry.leaseDeadline <= now) this.expire(entry)
      else if (entry.leaseDeadline < next) next = entry.leaseDeadline
    }
    return this.closed ? Infinity : next
  }

  private expire(entry: Entry): void {
    if (!this.claim(entry)) return
    if (this.settle(entry, "requeue") === "sent") {
      this.client.options.log("debug", `lease of a delivery from ${this.queue} ran out: returned to the queue`)
    }
  }

  /**
   * Call `wake` once, when a delivery arrives (while one waits unclaimed by earlier waiters), the
   * consumer closes, or `deadline` (epoch ms) passes; returns the unregister function.
   */
  onArrival(wake: () => void, deadline: number): () => void {
    const waiter: Waiter = { wake, deadline }
    this.waiters.add(waiter)
    this.waitTimer.schedule(deadline)
    return () => this.waiters.delete(waiter)
  }

  /** Wake every waiter whose deadline passed; the next waiter's deadline. */
  private sweepWaiters(now: number): number {
    let next = Infinity
    for (const waiter of [...this.waiters]) {
      if (waiter.deadline <= now) {
        this.waiters.delete(waiter)
        waiter.wake()
      } else if (waiter.deadline < next) next = waiter.deadline
    }
    return next
  }

  /** Whether `entry`'s channel is still the live one. */
  isLive(entry: Entry): boolean {
    return entry.generation === this.generation && entry.channel === this.channel
  }

  /** Claim `entry` for a settle: the first claim wins. */
  claim(entry: Entry): boolean {
    if (entry.state === "settled") return false
    entry.state = "settled"
    entry.leaseDeadline = Infinity
    this.active.delete(entry)
    return true
  }

  /**
   * Ack (at the end of the current synchronous run, coalesced) or requeue (now) a claimed entry on
   * its channel if that is still live; else drop it locally.
   */
  settle(entry: Entry, outcome: "ack" | "requeue"): SettleResult {
    if (entry.sent) return "already-settled"
    if (!this.isLive(entry)) return "stale"
    if (outcome === "ack") {
      if (this.pendingAcks.length === 0) {
        // With every prefetch slot taken the broker sends nothing until an ack comes: the acks go
        // out at the end of this synchronous run. Otherwise the broker still has slots to fill, and
        // acks gathered over one turn of the event loop cost it far less than a few at a time.
        if (this.unsentCount >= this.prefetch) queueMicrotask(this.flushAcks)
        else setImmediate(this.flushAcks)
      }
      this.pendingAcks.push(entry)
      return "sent"
    }
    this.markSent(entry)
    try {
      entry.channel.nack(entry.message, false, true)
      return "sent"
    } catch {
      return "stale"
    }
  }

  private markSent(entry: Entry): void {
    if (entry.sent) return
    entry.sent = true
    if (entry.generation === this.generation) this.unsentCount--
  }

  /** Send the pending acks: one `multiple` ack where no unsettled delivery is in the way. */
  private readonly flushAcks = (): void => {
    const acks = this.pendingAcks
    if (acks.length === 0) return
    this.pendingAcks = []
    const channel = this.channel
    let live = 0
    for (const entry of acks) {
      // a channel lost since: the broker requeued the message; its tag means nothing elsewhere
      if (channel !== undefined && this.isLive(entry)) acks[live++] = entry
      else entry.sent = true
    }
    if (live < acks.length) {
      this.client.options.log(
        "debug",
        `${acks.length - live} ack(s) on ${this.queue} dropped: their channel is gone and the broker redelivers them`
      )
    }
    if (channel === undefined || live === 0) return
    for (let i = 0; i < live; i++) this.markSent(acks[i]!)
    const oldestUnsent = this.oldestUnsentTag()
    // one ack each from `oldestUnsent` on; below it, one `multiple` ack (sent last) for the highest
    const messages = this.ackScratch
    let upTo: amqp.Message | undefined
    for (let i = 0; i < live; i++) {
      const message = acks[i]!.message
      const tag = message.fields.deliveryTag
      if (tag >= oldestUnsent) messages.push(message)
      else if (upTo === undefined || tag > upTo.fields.deliveryTag) upTo = message
    }
    if (upTo !== undefined) messages.push(upTo)
    try {
      const output = this.output
      if (output !== undefined && output.open) {
        output.write(encodeAcks(output.internals.ch, messages, upTo !== undefined))
      } else {
        for (let i = 0; i < messages.length; i++) {
          channel.ack(messages[i]!, upTo !== undefined && i === messages.length - 1)
        }
      }
    } catch {
      // the channel closed under us: the broker requeues what it held
    } finally {
      messages.length = 0
    }
  }

  /** The delivery tag of the live channel's oldest delivery without a settle sent (or Infinity). */
  private oldestUnsentTag(): number {
    const unsent = this.unsent
    let head = this.unsentHead
    while (head < unsent.length && unsent[head]!.sent) head++
    // drop what was settled out of order too, once it outweighs what is still open
    if (head > 1024 || unsent.length - head > 2 * this.unsentCount + 1024) {
      this.unsent = unsent.slice(head).filter((entry) => !entry.sent)
      head = 0
    }
    this.unsentHead = head
    const oldest = this.unsent[head]
    return oldest === undefined ? Infinity : oldest.message.fields.deliveryTag
  }

  /** Stop consuming: cancel, requeue what was not handed out, close the channel. Never hangs. */
  async close(): Promise<void> {
    if (this.closed) return
    // acks settled so far go out before the consumer is cancelled and its channel closed
    this.flushAcks()
    this.closed = true
    const waiters = [...this.waiters]
    this.waiters.clear()
    for (const waiter of waiters) waiter.wake()
    this.waitTimer.cancel()
    this.leaseTimer.cancel()
    this.idleTimer.cancel()
    const channel = this.channel
    this.channel = undefined
    this.output = undefined
    if (channel === undefined) return
    const bounded = <A>(promise: Promise<A>) => withTimeout(promise, 2000, () => new Error("timeout")).catch(() => {})
    if (this.consumerTag !== undefined) await bounded(channel.cancel(this.consumerTag))
    for (const entry of this.buffer) {
      try {
        channel.nack(entry.message, false, true)
      } catch {
        // closing below requeues it anyway
      }
    }
    this.buffer = []
    await bounded(channel.close())
  }
}
