import { Errors } from "@errand/core"
import { describe, expect, it } from "@effect/vitest"
import * as amqp from "amqplib"
import { Effect } from "effect"
import * as Topology from "../src/internal/topology.js"
import { RabbitMQBroker } from "../src/index.js"
import { failureOfMake, message, takeAtLeast, uniqueQueue, url } from "./helpers.js"

/** The adapter's defaults, as `RabbitMQBroker.make({})` resolves them. */
const defaults: Topology.TopologySettings = {
  queueType: "classic",
  maxPriority: 9,
  resolution: 100,
  tiers: 16,
  classicQueueVersion: 2
}

/** A separate amqplib connection for looking at (or preparing) what the broker holds. */
const withConnection = <A>(f: (connection: amqp.ChannelModel) => Promise<A>) =>
  Effect.promise(async () => {
    const connection = await amqp.connect(url)
    try {
      return await f(connection)
    } finally {
      await connection.close().catch(() => {})
    }
  })

/**
 * The storage version an existing queue was declared with, read the only way AMQP allows:
 * RabbitMQ accepts a second declaration only with the same arguments. `2`: it has
 * `x-queue-version: 2`; `"none"`: it has no version argument (the broker's default). Fails for a
 * queue that does not exist (checked passively first, so the probe never creates one).
 */
const declaredVersion = (name: string, options: amqp.Options.AssertQueue) =>
  withConnection(async (connection) => {
    // a refused declaration closes its channel with an error event: one channel per attempt
    const channel = async () => (await connection.createChannel()).on("error", () => {})
    await (await channel()).checkQueue(name)
    const withVersion = {
      ...options,
      arguments: { ...options.arguments, [Topology.queueVersionArgument]: 2 }
    }
    try {
      await (await channel()).assertQueue(name, withVersion)
      return 2 as const
    } catch (error) {
      if (Topology.unversionedQueueIn(error) !== name) throw error
      return "none" as const
    }
  })

/** The work queue and dead-letter queue of `queue` as session 6's Errand declared them (no version), holding `ids`. */
const legacyQueues = (queue: string, ids: ReadonlyArray<string>) =>
  withConnection(async (connection) => {
    const [work, deadLetters] = Topology.queueDeclarations(queue, { ...defaults, classicQueueVersion: 1 })
    const channel = await connection.createConfirmChannel()
    await channel.assertQueue(work![0], work![1])
    await channel.assertQueue(deadLetters![0], deadLetters![1])
    for (const id of ids) {
      channel.publish("", queue, Buffer.from(JSON.stringify({ id })), { persistent: true, messageId: id })
    }
    await channel.waitForConfirms()
  })

describe("classic queue storage version (x-queue-version)", () => {
  it.live("by default every queue of the topology is declared as version 2", () =>
    Effect.gen(function* () {
      const broker = yield* RabbitMQBroker.make({ url })
      const queue = uniqueQueue("cqv2")
      yield* Effect.addFinalizer(() => Effect.ignore(broker.deleteQueue(queue)))
      yield* broker.send(queue, [message("a")])
      for (const [name, options] of Topology.queueDeclarations(queue, defaults)) {
        expect([name, yield* declaredVersion(name, options)]).toEqual([name, 2])
      }
      const taken = yield* takeAtLeast(broker, queue, 1)
      expect(taken.map((d) => d.id)).toEqual(["a"])
      yield* taken[0]!.ack
    }).pipe(Effect.scoped)
  )

  it.live(
    "queues that exist without a version (an earlier Errand) keep it: sends, delays and takes work, nothing lost",
    () =>
      Effect.gen(function* () {
        const queue = uniqueQueue("cqv1-legacy")
        const [work, deadLetters] = Topology.queueDeclarations(queue, defaults)
        // the work queue and its dead-letter queue as an earlier version declared them, holding jobs
        yield* legacyQueues(queue, ["old-1", "old-2"])
        const broker = yield* RabbitMQBroker.make({ url })
        yield* Effect.addFinalizer(() => Effect.ignore(broker.deleteQueue(queue)))
        // the send declares the topology: the two old queues again as they are, the wait tiers as version 2
        yield* broker.send(queue, [message("new-1"), message("later", { delay: 300 })])
        const taken = yield* takeAtLeast(broker, queue, 4)
        expect(taken.map((d) => d.id)).toEqual(["old-1", "old-2", "new-1", "later"])
        for (const delivery of taken) yield* delivery.ack
        expect(yield* declaredVersion(work![0], work![1])).toBe("none")
        expect(yield* declaredVersion(deadLetters![0], deadLetters![1])).toBe("none")
        const [, , ...tiers] = Topology.queueDeclarations(queue, defaults)
        expect(tiers).toHaveLength(16)
        for (const [name, options] of tiers) expect([name, yield* declaredVersion(name, options)]).toEqual([name, 2])
        const stats = yield* broker.stats(queue)
        expect(stats).toMatchObject({ waiting: 0, active: 0, delayed: 0 })
      }).pipe(Effect.scoped)
  )

  it.live("the refusal of an unversioned queue does not fail other calls on the broker meanwhile", () =>
    Effect.gen(function* () {
      const legacy = uniqueQueue("cqv1-concurrent")
      const other = uniqueQueue("cqv2-other")
      yield* legacyQueues(legacy, [])
      const broker = yield* RabbitMQBroker.make({ url })
      yield* Effect.addFinalizer(() => Effect.ignore(broker.deleteQueue(legacy)))
      yield* Effect.addFinalizer(() => Effect.ignore(broker.deleteQueue(other)))
      yield* broker.send(other, [message("x"), message("y")])
      // the legacy queue's first declaration is refused once; the checks of `stats` on the other
      // queue are in flight on the broker's shared channel at the same moment
      const [sent, ...counts] = yield* Effect.all(
        [
          broker.send(legacy, [message("z")]),
          broker.stats(other),
          broker.stats(other),
          broker.deadLetters.count(other)
        ] as const,
        { concurrency: "unbounded" }
      )
      expect(sent.map((r) => r.id)).toEqual(["z"])
      expect(counts).toMatchObject([{ waiting: 2 }, { waiting: 2 }, 0])
      expect((yield* broker.stats(legacy)).waiting).toBe(1)
    }).pipe(Effect.scoped)
  )

  it.live("an unversioned queue deleted through the broker is created again as version 2", () =>
    Effect.gen(function* () {
      const queue = uniqueQueue("cqv1-recreated")
      const [work] = Topology.queueDeclarations(queue, defaults)
      yield* legacyQueues(queue, [])
      const broker = yield* RabbitMQBroker.make({ url })
      yield* Effect.addFinalizer(() => Effect.ignore(broker.deleteQueue(queue)))
      yield* broker.send(queue, [message("a")])
      expect(yield* declaredVersion(work![0], work![1])).toBe("none")
      yield* broker.deleteQueue(queue)
      yield* broker.send(queue, [message("b")])
      expect(yield* declaredVersion(work![0], work![1])).toBe(2)
    }).pipe(Effect.scoped)
  )

  it.live("classicQueueVersion 1 declares no version", () =>
    Effect.gen(function* () {
      const broker = yield* RabbitMQBroker.make({ url, classicQueueVersion: 1 })
      const queue = uniqueQueue("cqv1")
      yield* Effect.addFinalizer(() => Effect.ignore(broker.deleteQueue(queue)))
      yield* broker.send(queue, [message("a")])
      const legacy = { ...defaults, classicQueueVersion: 1 } as const
      for (const [name, options] of Topology.queueDeclarations(queue, legacy).slice(0, 3)) {
        expect([name, yield* declaredVersion(name, options)]).toEqual([name, "none"])
      }
    }).pipe(Effect.scoped)
  )

  it.live("a version 2 queue is refused to classicQueueVersion 1 with a typed error, nothing published", () =>
    Effect.gen(function* () {
      const current = yield* RabbitMQBroker.make({ url })
      const queue = uniqueQueue("cqv2-refused")
      yield* Effect.addFinalizer(() => Effect.ignore(current.deleteQueue(queue)))
      yield* current.send(queue, [message("a")])
      const earlier = yield* RabbitMQBroker.make({ url, classicQueueVersion: 1 })
      const refused = yield* Effect.flip(earlier.send(queue, [message("b")]))
      expect(refused).toBeInstanceOf(Errors.BrokerError)
      expect(refused.message).toContain("inequivalent arg 'x-queue-version'")
      const taken = yield* takeAtLeast(current, queue, 2, 1_000)
      expect(taken.map((d) => d.id)).toEqual(["a"])
    }).pipe(Effect.scoped)
  )

  it.live("a bad classicQueueVersion is a typed InvalidOption before any connection is made", () =>
    Effect.gen(function* () {
      for (const value of [0, 3, 2.5, Number.NaN]) {
        const error = yield* failureOfMake({ classicQueueVersion: value as 1 | 2 })
        expect(error).toBeInstanceOf(Errors.InvalidOption)
        expect(error).toMatchObject({ option: "classicQueueVersion" })
        expect(error?.message).toContain("must be 1 or 2")
      }
    })
  )
})
