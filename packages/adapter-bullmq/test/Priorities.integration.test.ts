import { describe, expect, it } from "@effect/vitest"
import { Broker, Errors } from "@errand/core"
import { Effect } from "effect"
import { Redis } from "ioredis"
import { BullMQBroker } from "../src/index.js"
import { deleteKeys, message, redisUrl, takeN, uniquePrefix, uniqueQueue } from "./helpers.js"

/** Where BullMQ holds the waiting jobs of a queue: its plain wait list and its prioritized set. */
const placement = (prefix: string, queue: string) =>
  Effect.promise(async () => {
    const redis = new Redis(redisUrl)
    try {
      const [wait, prioritized] = await Promise.all([
        redis.llen(`${prefix}:${queue}:wait`),
        redis.zcard(`${prefix}:${queue}:prioritized`)
      ])
      return { wait, prioritized }
    } finally {
      redis.disconnect()
    }
  })

const withBroker = <A, E>(
  options: BullMQBroker.Options,
  f: (broker: Broker.BrokerShape, queue: string, prefix: string) => Effect.Effect<A, E>
) => {
  const prefix = uniquePrefix()
  const queue = uniqueQueue("prio")
  return Effect.gen(function* () {
    const broker = yield* Broker.Broker
    return yield* f(broker, queue, prefix)
  }).pipe(
    Effect.provide(BullMQBroker.layer({ url: redisUrl, prefix, stalledInterval: 250, ...options })),
    Effect.ensuring(deleteKeys(prefix))
  )
}

describe("priorities option", () => {
  it.live("default: every job is prioritized, higher priority first; capabilities say so", () =>
    withBroker({}, (broker, queue, prefix) =>
      Effect.gen(function* () {
        expect(broker.capabilities.priorities).toBe(true)
        expect(BullMQBroker.capabilitiesFor({})).toEqual(BullMQBroker.capabilities)
        yield* broker.send(queue, [message("low", "l", { priority: 0 }), message("high", "h", { priority: 9 })])
        expect(yield* placement(prefix, queue)).toEqual({ wait: 0, prioritized: 2 })
        const [first] = yield* takeN(broker, queue, 1)
        expect(first?.id).toBe("high")
        yield* first!.ack
      })
    )
  )

  it.live("false: jobs go to the plain wait list in send order, priority ignored; capabilities say so", () =>
    withBroker({ priorities: false }, (broker, queue, prefix) =>
      Effect.gen(function* () {
        expect(broker.capabilities).toEqual({ ...BullMQBroker.capabilities, priorities: false })
        expect(BullMQBroker.capabilitiesFor({ priorities: false })).toEqual(broker.capabilities)
        yield* broker.send(queue, [message("a", "a", { priority: 0 }), message("b", "b", { priority: 9 })])
        yield* broker.send(queue, [message("c", "c", { priority: 5 })])
        expect(yield* placement(prefix, queue)).toEqual({ wait: 3, prioritized: 0 })
        const taken = yield* takeN(broker, queue, 3)
        expect(taken.map((d) => d.id)).toEqual(["a", "b", "c"])
        yield* Effect.forEach(taken, (d) => d.ack)
        expect(yield* broker.stats(queue)).toEqual({ waiting: 0, active: 0, delayed: 0, dead: 0 })
      })
    )
  )

  it.live("false: a retried and a released job come back through the plain wait list", () =>
    withBroker({ priorities: false }, (broker, queue, prefix) =>
      Effect.gen(function* () {
        yield* broker.send(queue, [message("r", "r1"), message("s", "s1", { delay: 300 })])
        const [r] = yield* takeN(broker, queue, 1)
        expect(r?.id).toBe("r")
        yield* r!.retry({ body: "r2", delay: 0 })
        const [again] = yield* takeN(broker, queue, 1)
        expect(again).toMatchObject({ id: "r", body: "r2", receiveCount: 2 })
        yield* again!.release
        expect(yield* placement(prefix, queue)).toMatchObject({ wait: 1, prioritized: 0 })
        const [back] = yield* takeN(broker, queue, 1)
        expect(back?.id).toBe("r")
        yield* back!.ack
        // the delayed job is promoted to the plain list too
        const [s] = yield* takeN(broker, queue, 1, { timeout: 5000 })
        expect(s?.id).toBe("s")
        expect(yield* placement(prefix, queue)).toEqual({ wait: 0, prioritized: 0 })
        yield* s!.ack
      })
    )
  )

  it.live("a priorities value that is not a boolean is an InvalidOption", () =>
    Effect.gen(function* () {
      const error = yield* Effect.flip(
        Effect.scoped(BullMQBroker.make({ url: redisUrl, priorities: "no" as unknown as boolean }))
      )
      expect(error).toBeInstanceOf(Errors.InvalidOption)
      expect(error).toMatchObject({ option: "priorities" })
    })
  )
})
