/**
 * The embedded in-memory broker: the whole broker contract in process memory, deterministic
 * under `TestClock`. Every time it reads comes from Effect's `Clock`, and a waiting `take` sleeps
 * on that clock, so a test can send with a one-hour delay and `TestClock.adjust("1 hour")`.
 *
 * Semantics beyond the contract:
 * - Priorities 0..9, higher first; FIFO within a priority.
 * - Per-group order: a group's messages are delivered in send order (send order wins over
 *   priority inside a group), one at a time. Only the oldest unsettled message of a group can be
 *   delivered; while it is in flight, delayed (a `retry` with a delay, or a delayed send) or
 *   waiting to be redelivered, it blocks the rest of its group, as an SQS FIFO message group does.
 *   It leaves the group only when acknowledged or dead-lettered.
 * - Deduplication: a send with an id the queue still holds (`"waiting"`, `"delayed"`, `"active"`,
 *   `"dead"`) or acknowledged within `deduplicationWindow` (`"completed"`) answers
 *   `duplicate: true` with that state and keeps the earlier message.
 * - Leases: an unsettled delivery goes back to the queue (at the tail of its priority) as soon as
 *   its lease ends by the clock, noticed lazily by any operation and by waiting takes. From then on
 *   every settle of that delivery is a no-op, even before anyone takes the message again: each
 *   delivery carries its own token. `extendLease(ms)` sets the lease to end `ms` from now.
 * - `release` puts the message back at the head of its priority, and does not count the
 *   delivery: the next delivery carries the same `receiveCount`.
 * - Nothing survives the process (`persistent: false`).
 *
 * @since 0.1.0
 */
import { Broker, Errors } from "@errand/core"
import { Clock, Context, Effect, Layer, Option } from "effect"
import type * as Fiber from "effect/Fiber"
import { Deque, MinHeap } from "./internal/memoryStructures.js"

/**
 * The capabilities of the memory broker with its default options (`maxPayloadBytes` follows the
 * option given to `make`/`layer`).
 *
 * @since 0.1.0
 */
export const capabilities: Broker.Capabilities = {
  maxDelay: Infinity,
  priorities: true,
  ordering: "per-group",
  deduplication: true,
  leaseExtension: true,
  maxPayloadBytes: 16 * 1024 * 1024,
  persistent: false
}

/**
 * Options for `make` and `layer`.
 *
 * @since 0.1.0
 */
export interface Options {
  /** Largest body accepted, in UTF-8 bytes. Default 16 MiB. */
  readonly maxPayloadBytes?: number | undefined
  /**
   * How long (ms) an acknowledged id still answers `duplicate` with state `"completed"`.
   * Default 5 minutes; 0 disables it (ids still held in any other state always deduplicate).
   */
  readonly deduplicationWindow?: number | undefined
  /**
   * Most acknowledged ids remembered per queue for the deduplication window; the oldest are
   * forgotten first. Bounds memory at high throughput. Default 100,000.
   */
  readonly deduplicationCapacity?: number | undefined
}

/**
 * The memory broker's service: the broker contract plus `reset`.
 *
 * @since 0.1.0
 */
export interface MemoryBrokerShape extends Broker.BrokerShape {
  /** Drop every queue, message and dead letter. Outstanding deliveries become no-ops. */
  readonly reset: Effect.Effect<void>
}

/**
 * The memory broker's own tag, for its extras (`reset`). Its `layer` provides this tag and core's
 * `Broker.Broker`.
 *
 * @since 0.1.0
 */
export class MemoryBroker extends Context.Service<MemoryBroker, MemoryBrokerShape>()("@errand/testing/MemoryBroker") {}

// ---------------------------------------------------------------------------------------------
// State
// ---------------------------------------------------------------------------------------------

const WAITING = 0
const DELAYED = 1
const ACTIVE = 2
/** Acknowledged, kept (without its body) only to answer duplicates within the window. */
const COMPLETED = 3
const GONE = 4
type State = typeof WAITING | typeof DELAYED | typeof ACTIVE | typeof COMPLETED | typeof GONE

const stateNames = ["waiting", "delayed", "active", "completed", "gone"] as const

interface Message {
  readonly id: string
  body: string
  readonly priority: number
  readonly group: string | undefined
  state: State
  dueAt: number
  receiveCount: number
  /** Increments on every delivery: a settle is honoured only with the current token. */
  token: number
  leaseDeadline: number
  /** Increments on every change that invalidates heap entries for this message. */
  version: number
}

interface QueueState {
  dropped: boolean
  /** One FIFO per priority, index = priority. Holds only messages deliverable now. */
  readonly ready: ReadonlyArray<Deque<Message>>
  readyCount: number
  readonly delayed: MinHeap<Message>
  readonly leases: MinHeap<Message>
  /** Messages by id: live ones (waiting, delayed, active) and completed ones within the window. */
  readonly byId: Map<string, Message>
  /** Per group, its unsettled messages in send order; only the head can be delivered. */
  readonly groups: Map<string, Deque<Message>>
  /**
   * Completed messages in acknowledgement (= expiry) order, for pruning from the oldest. A FIFO
   * rather than `Map` iteration: reading a `Map`'s oldest entry after many deletes scans their holes.
   */
  readonly completed: Deque<Message>
  /** Dead letters by id; insertion order is oldest first. */
  readonly dead: Map<string, Broker.DeadLetterEntry>
  /** Waiting + delayed messages. */
  pending: number
  delayedCount: number
  active: number
  seq: number
  waiters: Array<() => void>
}

const PRIORITY_LEVELS = 10

const makeQueueState = (): QueueState => {
  const ready: Array<Deque<Message>> = []
  for (let i = 0; i < PRIORITY_LEVELS; i++) ready.push(new Deque<Message>())
  return {
    dropped: false,
    ready,
    readyCount: 0,
    delayed: new MinHeap<Message>(),
    leases: new MinHeap<Message>(),
    byId: new Map(),
    groups: new Map(),
    completed: new Deque(),
    dead: new Map(),
    pending: 0,
    delayedCount: 0,
    active: 0,
    seq: 0,
    waiters: []
  }
}

const clampPriority = (priority: number): number =>
  priority >= PRIORITY_LEVELS - 1 ? PRIORITY_LEVELS - 1 : priority > 0 ? Math.floor(priority) : 0

/** UTF-8 length of `s`, the way `TextEncoder` counts it (a lone surrogate is 3 bytes). */
const utf8Length = (s: string): number => {
  let bytes = 0
  const n = s.length
  for (let i = 0; i < n; i++) {
    const c = s.charCodeAt(i)
    if (c < 0x80) bytes += 1
    else if (c < 0x800) bytes += 2
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < n) {
      const d = s.charCodeAt(i + 1)
      if (d >= 0xdc00 && d <= 0xdfff) {
        bytes += 4
        i++
      } else bytes += 3
    } else bytes += 3
  }
  return bytes
}

/** The body's size when it is over `limit`, else -1. Linear scan only for bodies near the limit. */
const oversize = (body: string, limit: number): number => {
  if (body.length * 3 <= limit) return -1
  const size = utf8Length(body)
  return size > limit ? size : -1
}

const payloadTooLarge = (operation: string, id: string, size: number, limit: number) =>
  new Errors.BrokerError({
    reason: "PayloadTooLarge",
    operation,
    message: `Message ${JSON.stringify(id.slice(0, 100))} is ${size} bytes; the memory broker takes at most ${limit}`
  })

const removeFrom = <A>(array: Array<A>, item: A): void => {
  const i = array.indexOf(item)
  if (i !== -1) array.splice(i, 1)
}

// ---------------------------------------------------------------------------------------------
// Constructor
// ---------------------------------------------------------------------------------------------

/**
 * Build a memory broker. Each call makes an independent broker with its own queues.
 *
 * @example
 * ```ts
 * const broker = yield* MemoryBroker.make({ deduplicationWindow: 0 })
 * yield* broker.send("emails", [{ id: "1", body: "{}", delay: 0, priority: 0 }])
 * ```
 *
 * @since 0.1.0
 */
export const make = (options?: Options): Effect.Effect<MemoryBrokerShape> => Effect.sync(() => makeUnsafe(options))

const makeUnsafe = (options?: Options): MemoryBrokerShape => {
  const maxPayloadBytes = options?.maxPayloadBytes ?? capabilities.maxPayloadBytes
  const windowOption = options?.deduplicationWindow ?? 5 * 60 * 1000
  const deduplicationWindow = windowOption > 0 ? windowOption : 0
  const capacityOption = options?.deduplicationCapacity ?? 100_000
  const deduplicationCapacity = capacityOption > 0 ? capacityOption : 0

  let queues = new Map<string, QueueState>()

  const queueFor = (name: string): QueueState => {
    let q = queues.get(name)
    if (q === undefined) {
      q = makeQueueState()
      queues.set(name, q)
    }
    return q
  }

  const nowOf = (fiber: Fiber.Fiber<unknown, unknown>): number => fiber.getRef(Clock.Clock).currentTimeMillisUnsafe()

  /**
   * Resume waiting takes. Through the fiber's dispatcher, never inline: resuming inline would
   * run the woken fiber inside this operation.
   */
  const wake = (q: QueueState, fiber: Fiber.Fiber<unknown, unknown>): void => {
    const waiters = q.waiters
    q.waiters = []
    fiber.currentDispatcher.scheduleTask(() => {
      for (let i = 0; i < waiters.length; i++) waiters[i]!()
    }, 0)
  }

  const afterOp = (q: QueueState, fiber: Fiber.Fiber<unknown, unknown>): void => {
    if (q.waiters.length > 0 && q.readyCount > 0) wake(q, fiber)
  }

  // --- transitions -----------------------------------------------------------------------------

  const pushReady = (q: QueueState, m: Message): void => {
    q.ready[m.priority]!.push(m)
    q.readyCount++
  }

  /** A message that became `WAITING` goes to its ready FIFO unless its group is blocked. */
  const makeWaiting = (q: QueueState, m: Message, front: boolean): void => {
    m.state = WAITING
    if (m.group !== undefined && q.groups.get(m.group)?.peek() !== m) return
    if (front) q.ready[m.priority]!.unshift(m)
    else q.ready[m.priority]!.push(m)
    q.readyCount++
  }

  const schedule = (q: QueueState, m: Message, dueAt: number): void => {
    m.state = DELAYED
    m.dueAt = dueAt
    q.delayedCount++
    q.delayed.push({ at: dueAt, seq: q.seq++, value: m, version: m.version })
  }

  /** Settled for good (ack or dead letter): forget it (or keep it as completed) and unblock its group. */
  const remove = (q: QueueState, m: Message, now: number, completed: boolean): void => {
    m.version++
    q.active--
    if (completed && deduplicationWindow > 0 && deduplicationCapacity > 0) {
      m.state = COMPLETED
      m.dueAt = now + deduplicationWindow
      m.body = ""
      q.completed.push(m)
      if (q.completed.size > deduplicationCapacity) pruneCompleted(q, now)
    } else {
      m.state = GONE
      if (q.byId.get(m.id) === m) q.byId.delete(m.id)
    }
    if (m.group !== undefined) {
      const group = q.groups.get(m.group)
      if (group !== undefined) {
        if (group.peek() === m) group.shift()
        const next = group.peek()
        if (next === undefined) q.groups.delete(m.group)
        else if (next.state === WAITING) pushReady(q, next)
      }
    }
  }

  /** Back from active to the queue (lease expiry, retry, release). */
  const requeue = (q: QueueState, m: Message, dueAt: number, now: number, front: boolean): void => {
    m.version++
    q.active--
    q.pending++
    if (dueAt > now) schedule(q, m, dueAt)
    else {
      m.dueAt = now
      makeWaiting(q, m, front)
    }
  }

  const liveTop = (heap: MinHeap<Message>, state: State) => {
    for (;;) {
      const top = heap.peek()
      if (top === undefined) return undefined
      if (top.version === top.value.version && top.value.state === state) return top
      heap.pop()
    }
  }

  /** Apply what the clock says happened: delays that came due, leases that ran out (in time order). */
  const tick = (q: QueueState, now: number): void => {
    for (;;) {
      const d = liveTop(q.delayed, DELAYED)
      const l = liveTop(q.leases, ACTIVE)
      const dAt = d === undefined ? Infinity : d.at
      const lAt = l === undefined ? Infinity : l.at
      if (dAt > now && lAt > now) return
      if (dAt <= lAt) {
        q.delayed.pop()
        const m = d!.value
        q.delayedCount--
        makeWaiting(q, m, false)
      } else {
        q.leases.pop()
        requeue(q, l!.value, now, now, false)
      }
    }
  }

  const addLease = (q: QueueState, m: Message, deadline: number): void => {
    m.leaseDeadline = deadline
    if (deadline !== Infinity) q.leases.push({ at: deadline, seq: q.seq++, value: m, version: m.version })
    // Acked deliveries leave stale entries behind the oldest live lease; compact when they pile up.
    if (q.leases.size > 1024 + 4 * q.active) {
      q.leases.retain((e) => e.version === e.value.version && e.value.state === ACTIVE)
    }
  }

  const insert = (q: QueueState, message: Broker.OutgoingMessage, now: number): void => {
    const m: Message = {
      id: message.id,
      body: message.body,
      priority: clampPriority(message.priority),
      group: message.group ?? undefined,
      state: WAITING,
      dueAt: now,
      receiveCount: 0,
      token: 0,
      leaseDeadline: 0,
      version: 0
    }
    q.byId.set(m.id, m)
    q.pending++
    if (m.group !== undefined) {
      let group = q.groups.get(m.group)
      if (group === undefined) {
        group = new Deque<Message>(4)
        q.groups.set(m.group, group)
      }
      group.push(m)
    }
    const delay = message.delay
    if (delay > 0) schedule(q, m, now + delay)
    else makeWaiting(q, m, false)
  }

  /** The state a duplicate send answers with, or undefined when the id is free. */
  const existingState = (q: QueueState, id: string, now: number): string | undefined => {
    const known = q.byId.get(id)
    if (known !== undefined) {
      if (known.state !== COMPLETED || known.dueAt > now) return stateNames[known.state]
      known.state = GONE
      q.byId.delete(id)
    }
    return q.dead.has(id) ? "dead" : undefined
  }

  const pruneCompleted = (q: QueueState, now: number): void => {
    const order = q.completed
    for (;;) {
      const oldest = order.peek()
      if (oldest === undefined) return
      if (oldest.state === COMPLETED) {
        if (oldest.dueAt > now && order.size <= deduplicationCapacity) return
        oldest.state = GONE
        if (q.byId.get(oldest.id) === oldest) q.byId.delete(oldest.id)
      }
      order.shift()
    }
  }

  // --- deliveries ------------------------------------------------------------------------------

  const settle = (
    q: QueueState,
    m: Message,
    token: number,
    f: (now: number) => void
  ): Effect.Effect<void, Errors.BrokerError> =>
    Effect.withFiber((fiber) => {
      if (q.dropped) return Effect.void
      const now = nowOf(fiber)
      tick(q, now)
      if (m.state === ACTIVE && m.token === token) f(now)
      afterOp(q, fiber)
      return Effect.void
    })

  const deliver = (q: QueueState, m: Message, lease: number, now: number): Broker.Delivery => {
    m.state = ACTIVE
    m.token++
    m.receiveCount++
    m.version++
    q.pending--
    q.active++
    addLease(q, m, now + lease)
    const token = m.token
    return {
      id: m.id,
      body: m.body,
      receiveCount: m.receiveCount,
      ack: settle(q, m, token, (now) => {
        remove(q, m, now, true)
      }),
      retry: (options) =>
        settle(q, m, token, (now) => {
          m.body = options.body
          requeue(q, m, options.delay > 0 ? now + options.delay : now, now, false)
        }),
      deadLetter: (record) =>
        settle(q, m, token, (now) => {
          remove(q, m, now, false)
          q.dead.delete(m.id)
          q.dead.set(m.id, {
            id: m.id,
            body: record.body,
            reason: record.reason,
            error: record.error,
            attempts: record.attempts,
            failedAt: record.failedAt
          })
        }),
      extendLease: (ms) =>
        settle(q, m, token, (now) => {
          m.version++
          addLease(q, m, now + (ms > 0 ? ms : 0))
        }),
      release: settle(q, m, token, (now) => {
        m.receiveCount--
        requeue(q, m, now, now, true)
      })
    }
  }

  const pull = (q: QueueState, max: number, lease: number, now: number): Array<Broker.Delivery> => {
    const out: Array<Broker.Delivery> = []
    if (q.readyCount === 0) return out
    for (let p = PRIORITY_LEVELS - 1; p >= 0 && out.length < max; p--) {
      const fifo = q.ready[p]!
      while (fifo.size > 0 && out.length < max) {
        const m = fifo.shift()!
        q.readyCount--
        out.push(deliver(q, m, lease, now))
      }
    }
    return out
  }

  const empty: ReadonlyArray<Broker.Delivery> = []

  /** One attempt at `take`; when nothing is ready and time is left, sleep until woken and retry. */
  const takeUntil = (
    queue: string,
    max: number,
    lease: number,
    wait: number,
    deadlineOrNaN: number
  ): Effect.Effect<ReadonlyArray<Broker.Delivery>, Errors.BrokerError> =>
    Effect.withFiber((fiber) => {
      const now = nowOf(fiber)
      const deadline = Number.isNaN(deadlineOrNaN) ? now + wait : deadlineOrNaN
      const q = queueFor(queue)
      tick(q, now)
      const out = pull(q, max, lease, now)
      if (out.length > 0) {
        afterOp(q, fiber)
        return Effect.succeed(out)
      }
      if (deadline <= now) return Effect.succeed(empty)
      const next = Math.min(
        deadline,
        liveTop(q.delayed, DELAYED)?.at ?? Infinity,
        liveTop(q.leases, ACTIVE)?.at ?? Infinity
      )
      const signal = Effect.callback<void>((resume) => {
        const waiter = () => resume(Effect.void)
        q.waiters.push(waiter)
        return Effect.sync(() => removeFrom(q.waiters, waiter))
      })
      const sleep = next === Infinity ? signal : Effect.race(signal, Effect.sleep(next - now))
      return Effect.flatMap(sleep, () => takeUntil(queue, max, lease, wait, deadline))
    })

  // --- the contract ----------------------------------------------------------------------------

  const send: Broker.BrokerShape["send"] = (queue, messages) =>
    Effect.withFiber((fiber) => {
      for (let i = 0; i < messages.length; i++) {
        const message = messages[i]!
        const size = oversize(message.body, maxPayloadBytes)
        if (size !== -1) return Effect.fail(payloadTooLarge("send", message.id, size, maxPayloadBytes))
      }
      const now = nowOf(fiber)
      const q = queueFor(queue)
      tick(q, now)
      pruneCompleted(q, now)
      const results: Array<Broker.SendResult> = new Array(messages.length)
      for (let i = 0; i < messages.length; i++) {
        const message = messages[i]!
        const existing = existingState(q, message.id, now)
        if (existing !== undefined) {
          results[i] = { id: message.id, duplicate: true, existingState: existing }
        } else {
          insert(q, message, now)
          results[i] = { id: message.id, duplicate: false }
        }
      }
      afterOp(q, fiber)
      return Effect.succeed(results)
    })

  const take: Broker.BrokerShape["take"] = (queue, options) => {
    const max = Math.floor(options.max)
    if (!(max > 0)) return Effect.succeed(empty)
    const lease = options.lease > 0 ? options.lease : 0
    return takeUntil(queue, max, lease, options.wait > 0 ? options.wait : 0, NaN)
  }

  const stats: Broker.BrokerShape["stats"] = (queue) =>
    Effect.withFiber((fiber) => {
      const q = queues.get(queue)
      if (q === undefined) return Effect.succeed({ waiting: 0, active: 0, delayed: 0, dead: 0 })
      tick(q, nowOf(fiber))
      afterOp(q, fiber)
      return Effect.succeed({
        waiting: q.pending - q.delayedCount,
        active: q.active,
        delayed: q.delayedCount,
        dead: q.dead.size
      })
    })

  const drop = (q: QueueState, fiber: Fiber.Fiber<unknown, unknown>): void => {
    q.dropped = true
    if (q.waiters.length > 0) wake(q, fiber)
  }

  const deleteQueue: Broker.BrokerShape["deleteQueue"] = (queue) =>
    Effect.withFiber((fiber) => {
      const q = queues.get(queue)
      if (q !== undefined) {
        queues.delete(queue)
        drop(q, fiber)
      }
      return Effect.void
    })

  const reset: Effect.Effect<void> = Effect.withFiber((fiber) => {
    const old = queues
    queues = new Map()
    for (const q of old.values()) drop(q, fiber)
    return Effect.void
  })

  const selectDead = (q: QueueState, ids: ReadonlyArray<string> | undefined): Array<Broker.DeadLetterEntry> => {
    if (ids === undefined) return Array.from(q.dead.values())
    const out: Array<Broker.DeadLetterEntry> = []
    for (const id of new Set(ids)) {
      const entry = q.dead.get(id)
      if (entry !== undefined) out.push(entry)
    }
    return out
  }

  const deadLetters: Broker.DeadLetterStore = {
    list: (queue, options) =>
      Effect.sync(() => {
        const q = queues.get(queue)
        const out: Array<Broker.DeadLetterEntry> = []
        if (q === undefined) return out
        const offset = options.offset > 0 ? Math.floor(options.offset) : 0
        const limit = options.limit > 0 ? options.limit : 0
        if (limit === 0) return out
        let i = 0
        for (const entry of q.dead.values()) {
          if (i++ < offset) continue
          out.push(entry)
          if (out.length >= limit) break
        }
        return out
      }),
    get: (queue, id) => Effect.sync(() => Option.fromNullishOr(queues.get(queue)?.dead.get(id))),
    count: (queue) => Effect.sync(() => queues.get(queue)?.dead.size ?? 0),
    redrive: (queue, options) =>
      Effect.withFiber((fiber) => {
        const q = queues.get(queue)
        if (q === undefined) return Effect.succeed(0)
        const entries = selectDead(q, options.ids)
        const messages = entries.map(options.prepare)
        for (const message of messages) {
          const size = oversize(message.body, maxPayloadBytes)
          if (size !== -1) return Effect.fail(payloadTooLarge("redrive", message.id, size, maxPayloadBytes))
        }
        const now = nowOf(fiber)
        tick(q, now)
        for (let i = 0; i < entries.length; i++) {
          const message = messages[i]!
          q.dead.delete(entries[i]!.id)
          q.dead.delete(message.id)
          // A live message with this id is already queued: the entry is moved, not doubled.
          const known = q.byId.get(message.id)
          if (known !== undefined && known.state !== COMPLETED) continue
          if (known !== undefined) known.state = GONE
          insert(q, message, now)
        }
        afterOp(q, fiber)
        return Effect.succeed(entries.length)
      }),
    purge: (queue, ids) =>
      Effect.sync(() => {
        const q = queues.get(queue)
        if (q === undefined) return 0
        if (ids === undefined) {
          const n = q.dead.size
          q.dead.clear()
          return n
        }
        let n = 0
        for (const id of new Set(ids)) if (q.dead.delete(id)) n++
        return n
      })
  }

  return {
    name: "memory",
    capabilities:
      maxPayloadBytes === capabilities.maxPayloadBytes ? capabilities : { ...capabilities, maxPayloadBytes },
    validateQueueName: () => undefined,
    send,
    take,
    deadLetters,
    stats,
    deleteQueue,
    reset
  }
}

/**
 * A layer providing a fresh memory broker as both `MemoryBroker` and core's `Broker.Broker`.
 *
 * @example
 * ```ts
 * const program = Effect.gen(function*() {
 *   const broker = yield* Broker.Broker
 *   yield* broker.send("emails", [{ id: "1", body: "{}", delay: 0, priority: 0 }])
 * }).pipe(Effect.provide(MemoryBroker.layer()))
 * ```
 *
 * @since 0.1.0
 */
export const layer = (options?: Options): Layer.Layer<Broker.Broker | MemoryBroker> =>
  Layer.effectContext(
    Effect.map(make(options), (broker) => Context.make(MemoryBroker, broker).pipe(Context.add(Broker.Broker, broker)))
  )
