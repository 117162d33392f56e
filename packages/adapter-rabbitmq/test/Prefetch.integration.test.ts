import { Errors } from "@errand/core"
import { describe, expect, it } from "@effect/vitest"
import * as amqp from "amqplib"
import { Effect } from "effect"
import { RabbitMQBroker } from "../src/index.js"
import { eventually, failureOfMake, message, takeAtLeast, uniqueQueue, url } from "./helpers.js"

/** The work queue's ready count as the broker reports it (what no consumer holds). */
const readyOnBroker = (queue: string) =>
  Effect.promise(async () => {
    const connection = await amqp.connect(url)
    try {
      const channel = await connection.createChannel()
      return (await channel.checkQueue(queue)).messageCount
    } finally {
      await connection.close()
    }
  })

const ids = (n: number) => Array.from({ length: n }, (_, i) => `m${i}`)

/** A broker with `options` and a fresh queue holding `n` messages, of which one was taken. */
const withOneTaken = (options: RabbitMQBroker.Options, n: number) =>
  Effect.gen(function* () {
    const broker = yield* RabbitMQBroker.make({ url, ...options })
    const queue = uniqueQueue("prefetch")
    yield* Effect.addFinalizer(() => Effect.ignore(broker.deleteQueue(queue)))
    yield* broker.send(
      queue,
      ids(n).map((id) => message(id))
    )
    const taken = yield* broker.take(queue, { max: 1, lease: 30_000, wait: 5_000 })
    expect(taken.map((d) => d.id)).toEqual(["m0"])
    return { broker, queue, first: taken[0]! }
  })

/** Send `n` messages, take one, and report what the broker still holds and what stats say. */
const afterOneTake = (options: RabbitMQBroker.Options, n: number) =>
  Effect.gen(function* () {
    const { broker, queue } = yield* withOneTaken(options, n)
    // the broker delivers what the prefetch allows shortly after the take returns
    yield* Effect.sleep(300)
    const ready = yield* readyOnBroker(queue)
    const stats = yield* broker.stats(queue)
    return { ready, stats }
  })

describe("prefetch ahead of the worker's free slots", () => {
  it.live("prefetchAhead 3: a take of 1 has 3 more delivered ahead, buffered here and counted as waiting", () =>
    Effect.gen(function* () {
      const { ready, stats } = yield* afterOneTake({ prefetchAhead: 3 }, 10)
      expect(ready).toBe(10 - 1 - 3)
      expect(stats.active).toBe(1)
      expect(stats.waiting).toBe(9)
    }).pipe(Effect.scoped)
  )

  it.live("prefetchAhead 0: the prefetch is the take's max, nothing is delivered ahead", () =>
    Effect.gen(function* () {
      const { ready, stats } = yield* afterOneTake({ prefetchAhead: 0 }, 10)
      expect(ready).toBe(9)
      expect(stats.waiting).toBe(9)
    }).pipe(Effect.scoped)
  )

  it.live("the default delivers 10 ahead", () =>
    Effect.gen(function* () {
      const { ready, stats } = yield* afterOneTake({}, 20)
      expect(ready).toBe(20 - 1 - 10)
      expect(stats.waiting).toBe(19)
    }).pipe(Effect.scoped)
  )

  it.live("deliveries buffered ahead go back to the queue when the layer closes: none lost, none run", () =>
    Effect.gen(function* () {
      const queue = uniqueQueue("prefetch-close")
      yield* Effect.scoped(
        Effect.gen(function* () {
          const broker = yield* RabbitMQBroker.make({ url, prefetchAhead: 5 })
          yield* broker.send(
            queue,
            ids(8).map((id) => message(id))
          )
          const [first] = yield* broker.take(queue, { max: 1, lease: 30_000, wait: 5_000 })
          expect(first?.id).toBe("m0")
          yield* first!.ack
          // the prefetch stays 1 + 5 with nothing in flight: six of the seven left come ahead
          yield* eventually(readyOnBroker(queue), (ready) => ready === 8 - 1 - 6)
        })
      )
      // the six buffered deliveries were never handed out: back in the queue, all of them
      expect(yield* eventually(readyOnBroker(queue), (ready) => ready === 7)).toBe(7)
      const broker = yield* RabbitMQBroker.make({ url, prefetchAhead: 0 })
      yield* Effect.addFinalizer(() => Effect.ignore(broker.deleteQueue(queue)))
      const rest = yield* takeAtLeast(broker, queue, 7)
      expect(rest.map((d) => d.id).sort()).toEqual(ids(8).slice(1))
      for (const delivery of rest) yield* delivery.ack
    }).pipe(Effect.scoped)
  )

  it.live("a consumer no take uses any more gives back what it buffered; a later take starts a new one", () =>
    Effect.gen(function* () {
      const { broker, queue, first } = yield* withOneTaken({ prefetchAhead: 4, consumerIdleTimeout: 300 }, 10)
      const channel = broker.unsafeConsumer(queue)?.channel
      expect(channel).toBeDefined()
      // while a delivery is handed out the consumer is in use, however long the job takes
      yield* eventually(readyOnBroker(queue), (ready) => ready === 10 - 1 - 4)
      yield* Effect.sleep(700)
      expect(yield* readyOnBroker(queue)).toBe(5)
      yield* first.ack
      // nothing handed out and no take for 300 ms: the four buffered ones go back
      expect(yield* eventually(readyOnBroker(queue), (ready) => ready === 9, 5_000)).toBe(9)
      expect(broker.unsafeConsumer(queue)).toBeUndefined()
      expect((yield* broker.stats(queue)).waiting).toBe(9)
      // and the next take consumes again, on a new consumer and channel
      const rest = yield* takeAtLeast(broker, queue, 9)
      expect(rest.map((d) => d.id).sort()).toEqual(ids(10).slice(1))
      const again = broker.unsafeConsumer(queue)?.channel
      expect(again).toBeDefined()
      expect(again).not.toBe(channel)
      for (const delivery of rest) yield* delivery.ack
    }).pipe(Effect.scoped)
  )

  it.live("a bad prefetchAhead or consumerIdleTimeout is a typed InvalidOption before any connection is made", () =>
    Effect.gen(function* () {
      const bad: ReadonlyArray<[keyof RabbitMQBroker.Options, number]> = [
        ["prefetchAhead", -1],
        ["prefetchAhead", 1.5],
        ["prefetchAhead", 1001],
        ["prefetchAhead", Number.NaN],
        ["consumerIdleTimeout", 0],
        ["consumerIdleTimeout", -5],
        ["consumerIdleTimeout", Number.NaN]
      ]
      for (const [option, value] of bad) {
        const error = yield* failureOfMake({ [option]: value })
        expect(error).toBeInstanceOf(Errors.InvalidOption)
        expect(error).toMatchObject({ option })
        expect(error?.message).toContain(option)
      }
    })
  )
})
