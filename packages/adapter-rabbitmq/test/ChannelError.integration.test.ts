import { describe, expect, it } from "@effect/vitest"
import type * as amqp from "amqplib"
import { Effect } from "effect"
import { RabbitMQBroker } from "../src/index.js"
import { eventually, message, takeAtLeast, uniqueQueue, url } from "./helpers.js"

describe.each(["classic", "quorum"] as const)("channel errors (%s)", (queueType) => {
  it.live("a channel error drops stale settles locally and causes no mass redelivery", () =>
    Effect.gen(function* () {
      const broker = yield* RabbitMQBroker.make({ url, queueType })
      const queue = uniqueQueue("chan")
      yield* Effect.addFinalizer(() => Effect.ignore(broker.deleteQueue(queue)))
      yield* broker.send(
        queue,
        ["a", "b", "c"].map((id) => message(id))
      )
      const before = yield* takeAtLeast(broker, queue, 3)
      expect(before).toHaveLength(3)
      const first = broker.unsafeConsumer(queue)!
      // Force a channel error on the consuming channel: ack a delivery tag it never had.
      first.channel!.ack({ fields: { deliveryTag: 987_654 } } as unknown as amqp.Message)
      const second = yield* eventually(
        Effect.sync(() => broker.unsafeConsumer(queue)!),
        (c) => c.generation > first.generation && c.channel !== undefined
      )
      // The broker requeued what the dead channel held; the new channel gets it again.
      const again = yield* takeAtLeast(broker, queue, 3)
      expect(again.map((d) => d.id).sort()).toEqual(["a", "b", "c"])
      expect(again.every((d) => d.receiveCount === 2)).toBe(true)
      // Stale settles succeed as no-ops: nothing reaches the new channel.
      for (const d of before) yield* d.ack
      yield* before[0]!.release
      yield* before[1]!.retry({ body: "x", delay: 0 })
      // A round trip on the new channel proves no stale tag was sent there (the broker would
      // have closed the channel before answering).
      yield* Effect.promise(() => second.channel!.checkQueue(queue))
      expect(broker.unsafeConsumer(queue)!.generation).toBe(second.generation)
      for (const d of again) yield* d.ack
      expect(yield* broker.stats(queue)).toEqual({ waiting: 0, active: 0, delayed: 0, dead: 0 })
      expect(yield* broker.take(queue, { max: 10, lease: 1000, wait: 500 })).toEqual([])
      expect(broker.unsafeConsumer(queue)!.generation).toBe(second.generation)
    }).pipe(Effect.scoped)
  )
})

describe("publisher channel", () => {
  it.live("a publish that fails on a channel which can no longer publish drops it: the retry opens a fresh one", () =>
    Effect.gen(function* () {
      const broker = yield* RabbitMQBroker.make({ url, sendTimeout: 3000 })
      const queue = uniqueQueue("pubchan")
      yield* Effect.addFinalizer(() => Effect.ignore(broker.deleteQueue(queue)))
      yield* broker.send(queue, [message("before")])
      // The consumer's channel leads to amqplib's connection, and from there to the one confirm
      // channel of this broker: its publisher.
      expect(yield* takeAtLeast(broker, queue, 1)).toHaveLength(1)
      const connection = (broker.unsafeConsumer(queue)!.channel as unknown as { connection: AmqpConnection }).connection
      const publishers = connection.channels.flatMap((entry) =>
        entry !== null && typeof entry.channel.waitForConfirms === "function" ? [entry.channel] : []
      )
      expect(publishers).toHaveLength(1)
      // Put it in amqplib's closing state, as while a close awaits the server's CloseOk: every
      // publish throws, and its "close" event has not come (here it never comes).
      publishers[0]!.toClosing(new Error("test"))
      expect(() => publishers[0]!.sendMessage({}, {}, Buffer.alloc(0))).toThrow(/closing/u)
      // The send must not retry on that channel until its deadline: it opens a new one.
      yield* broker.send(queue, [message("after")])
      const [after] = yield* takeAtLeast(broker, queue, 1)
      expect(after?.id).toBe("after")
    }).pipe(Effect.scoped)
  )
})

/** The parts of amqplib's connection this test reaches into. */
interface AmqpConnection {
  readonly channels: ReadonlyArray<{
    readonly channel: {
      readonly waitForConfirms?: unknown
      toClosing(stack: Error): void
      sendMessage(fields: object, properties: object, content: Buffer): void
    }
  } | null>
}

describe("prefetch", () => {
  it.live("follows take's max: the broker keeps the rest ready", () =>
    Effect.gen(function* () {
      const broker = yield* RabbitMQBroker.make({ url })
      const queue = uniqueQueue("prefetch")
      yield* Effect.addFinalizer(() => Effect.ignore(broker.deleteQueue(queue)))
      yield* broker.send(
        queue,
        Array.from({ length: 10 }, (_, i) => message(`m${i}`))
      )
      const got = yield* takeAtLeast(broker, queue, 3)
      expect(got).toHaveLength(3)
      // Only 3 are unacked on the broker: 7 stay ready (not buffered in this process).
      const stats = yield* eventually(broker.stats(queue), (s) => s.waiting === 7)
      expect(stats.active).toBe(3)
      yield* got[0]!.ack
      // One slot free again: in flight (2) + max (1) stays within the prefetch of 3.
      const next = yield* takeAtLeast(broker, queue, 1)
      expect(next).toHaveLength(1)
      expect((yield* broker.stats(queue)).waiting).toBe(6)
      // A bigger max raises the prefetch.
      const more = yield* takeAtLeast(broker, queue, 6)
      expect(more).toHaveLength(6)
      for (const d of [...got.slice(1), ...next, ...more]) yield* d.ack
      expect(yield* broker.stats(queue)).toEqual({ waiting: 0, active: 0, delayed: 0, dead: 0 })
    }).pipe(Effect.scoped)
  )
})

describe("priorities", () => {
  it.live("classic queues deliver higher priorities first", () =>
    Effect.gen(function* () {
      const broker = yield* RabbitMQBroker.make({ url })
      expect(broker.capabilities.priorities).toBe(true)
      const queue = uniqueQueue("prio")
      yield* Effect.addFinalizer(() => Effect.ignore(broker.deleteQueue(queue)))
      yield* broker.send(queue, [
        message("low", { priority: 0 }),
        message("mid", { priority: 5 }),
        message("high", { priority: 9 })
      ])
      const order: Array<string> = []
      for (let i = 0; i < 3; i++) {
        const [d] = yield* takeAtLeast(broker, queue, 1)
        order.push(d!.id)
        yield* d!.ack
      }
      expect(order).toEqual(["high", "mid", "low"])
    }).pipe(Effect.scoped)
  )

  it.live("quorum queues declare no priorities", () =>
    Effect.gen(function* () {
      const broker = yield* RabbitMQBroker.make({ url, queueType: "quorum" })
      expect(broker.capabilities.priorities).toBe(false)
      expect(broker.capabilities.leaseExtension).toBe(true)
    }).pipe(Effect.scoped)
  )
})
