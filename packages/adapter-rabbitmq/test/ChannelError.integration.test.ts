import { describe, expect, it } from "@effect/vitest"
import * as amqp from "amqplib"
import { Effect } from "effect"
import { RabbitMQBroker } from "../src/index.js"
import { refuses } from "../src/internal/client.js"
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

describe("publisher channel closed by a refused publish", () => {
  it("blames the messages the server's refusal names, and every message when it names none", () => {
    const publication = (exchange: string, body: string) => ({
      exchange,
      routingKey: "k",
      body,
      messageId: "m",
      priority: 0
    })
    const missing = new Error(
      `Channel closed by server: 404 (NOT-FOUND) with message "NOT_FOUND - no exchange 'q~route~3276800' in vhost '/'"`
    )
    expect(refuses(missing, publication("q~route~3276800", "{}"))).toBe(true)
    expect(refuses(missing, publication("", "{}"))).toBe(false)
    expect(refuses(missing, publication("other~route~3276800", "{}"))).toBe(false)
    const tooLarge = new Error(
      `Channel closed by server: 406 (PRECONDITION-FAILED) with message "PRECONDITION_FAILED - message size 20 is larger than configured max size 10"`
    )
    expect(refuses(tooLarge, publication("", "x".repeat(11)))).toBe(true)
    expect(refuses(tooLarge, publication("", "x".repeat(10)))).toBe(false)
    expect(refuses(new Error("Channel closed by server: 541 (INTERNAL-ERROR)"), publication("", "{}"))).toBe(true)
  })

  it.live("fails only the refused message: the others in flight on the channel are sent again on a new one", () =>
    Effect.gen(function* () {
      const broker = yield* RabbitMQBroker.make({ url, sendTimeout: 10_000 })
      const broken = uniqueQueue("refused")
      const other = uniqueQueue("bystander")
      yield* Effect.addFinalizer(() => Effect.ignore(broker.deleteQueue(broken)))
      yield* Effect.addFinalizer(() => Effect.ignore(broker.deleteQueue(other)))
      // both topologies declared, so every send below publishes at once on the shared channel
      yield* broker.send(broken, [message("declared")])
      yield* broker.send(other, [message("declared")])
      // The delay exchange of one queue disappears behind the adapter's back.
      yield* Effect.promise(async () => {
        const connection = await amqp.connect(url)
        const channel = await connection.createChannel()
        await channel.deleteExchange(`${broken}~route~${100 * 2 ** 15}`)
        await connection.close()
      })
      // Sends in flight together: the server closes the channel at the refused publish (404), and
      // the confirms of everything around it on that channel are lost with the channel.
      const bystanders = Array.from({ length: 6 }, (_, i) => `m${i}`)
      const sends = [
        ...bystanders.slice(0, 3).map((id) => broker.send(other, [message(id)])),
        broker.send(broken, [message("delayed", { delay: 1000 })]),
        ...bystanders.slice(3).map((id) => broker.send(other, [message(id)]))
      ]
      const results = yield* Effect.all(
        sends.map((send) => Effect.result(send)),
        { concurrency: "unbounded" }
      )
      const failures = results.flatMap((result) => (result._tag === "Failure" ? [result.failure.reason] : []))
      expect(failures).toEqual(["NotFound"])
      expect(results[3]!._tag).toBe("Failure")
      // every other message was confirmed, and arrives (those the server had routed before the
      // refusal may arrive twice: their confirms were lost, so they were sent again)
      const expected = ["declared", ...bystanders]
      const seen = new Set<string>()
      const deadline = Date.now() + 10_000
      while (seen.size < expected.length && Date.now() < deadline) {
        for (const delivery of yield* takeAtLeast(broker, other, 1, 1000)) {
          seen.add(delivery.id)
          yield* delivery.ack
        }
      }
      expect([...seen].sort()).toEqual(expected.sort())
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
