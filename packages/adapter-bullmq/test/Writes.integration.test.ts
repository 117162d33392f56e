import { afterEach, describe, expect, it } from "@effect/vitest"
import { Broker } from "@errand/core"
import { Effect } from "effect"
import { Redis } from "ioredis"
import { randomUUID } from "node:crypto"
import { Socket } from "node:net"
import { holdRestOfTick, inOneWrite } from "../src/internal/writes.js"
import { deleteKeys, message, redisUrl, takeN, uniquePrefix, uniqueQueue } from "./helpers.js"
import { BullMQBroker } from "../src/index.js"

const nextTick = () => new Promise<void>((resolve) => process.nextTick(resolve))

/**
 * Count the writes that reach a socket handle (about one system call each: Node's `_writeGeneric`,
 * behind both `_write` and `_writev`) on `target`, one socket or `Socket.prototype` for all.
 */
const countWrites = (target: object) => {
  const sockets = target as Record<string, (...args: Array<unknown>) => unknown>
  const own = Object.prototype.hasOwnProperty.call(sockets, "_writeGeneric")
  const write = sockets["_writeGeneric"]!
  const counter = {
    writes: 0,
    restore: () => {
      if (own) sockets["_writeGeneric"] = write
      else delete sockets["_writeGeneric"]
    }
  }
  sockets["_writeGeneric"] = function (this: unknown, ...args: Array<unknown>) {
    counter.writes++
    return write.apply(this, args)
  }
  return counter
}

/** A connected client whose socket counts its writes. */
const counted = async () => {
  const client = new Redis(redisUrl, { lazyConnect: true })
  await client.connect()
  return { client, counter: countWrites(client.stream) }
}

const clients: Array<Redis> = []
afterEach(async () => {
  for (const client of clients.splice(0)) {
    await client.quit().catch(() => client.disconnect())
  }
})

describe("holdRestOfTick", () => {
  it("sends the commands written after it in the same tick in one write, in order", async () => {
    const { client, counter } = await counted()
    clients.push(client)
    const key = `errand-test-writes-${randomUUID()}`
    const replies: Array<Promise<number>> = [client.incr(key)]
    holdRestOfTick(client)
    // the command before the hold has left; the ones after it wait for the end of the tick
    expect(counter.writes).toBe(1)
    for (let i = 0; i < 19; i++) {
      replies.push(client.incr(key))
      holdRestOfTick(client)
    }
    expect(counter.writes).toBe(1)
    expect(client.stream.writableLength).toBeGreaterThan(0)
    await nextTick()
    expect(counter.writes).toBe(2)
    expect(await Promise.all(replies)).toEqual(Array.from({ length: 20 }, (_, i) => i + 1))
    await client.del(key)
  })

  it("holds only until the tick ends: a later tick writes at once again", async () => {
    const { client, counter } = await counted()
    clients.push(client)
    await client.ping()
    holdRestOfTick(client)
    await nextTick()
    counter.writes = 0
    const reply = client.ping()
    expect(counter.writes).toBe(1)
    expect(await reply).toBe("PONG")
  })

  it("without it, each command is its own write", async () => {
    const { client, counter } = await counted()
    clients.push(client)
    await Promise.all(Array.from({ length: 10 }, () => client.ping()))
    expect(counter.writes).toBe(10)
  })

  it("does nothing on a client that is not ready", () => {
    const calls: Array<string> = []
    const stream = { cork: () => calls.push("cork"), uncork: () => calls.push("uncork") }
    holdRestOfTick({ status: "connecting", stream })
    holdRestOfTick({ status: "ready" })
    expect(calls).toEqual([])
  })
})

describe("inOneWrite", () => {
  it("sends what it writes in one write when it returns", async () => {
    const { client, counter } = await counted()
    clients.push(client)
    const replies: Array<Promise<string>> = []
    inOneWrite(client, () => {
      for (let i = 0; i < 10; i++) replies.push(client.ping())
      expect(counter.writes).toBe(0)
    })
    expect(counter.writes).toBe(1)
    expect(await Promise.all(replies)).toEqual(Array.from({ length: 10 }, () => "PONG"))
  })

  it("still runs the writes on a client that is not ready", () => {
    let ran = false
    inOneWrite({ status: "end" }, () => (ran = true))
    expect(ran).toBe(true)
  })
})

/** Count every socket write in the process while `effect` runs. */
const countingWrites = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.suspend(() => {
    const counter = countWrites(Socket.prototype)
    return effect.pipe(
      Effect.map((value) => ({ value, writes: counter.writes })),
      Effect.ensuring(Effect.sync(counter.restore))
    )
  })

/** Run `f` on a broker with a prefix of its own, deleting its keys afterwards. */
const withBroker = <A, E>(f: (broker: Broker.BrokerShape, queue: string) => Effect.Effect<A, E>) => {
  const prefix = uniquePrefix()
  return Broker.Broker.use((broker) => f(broker, uniqueQueue("writes"))).pipe(
    Effect.provide(BullMQBroker.layer({ url: redisUrl, prefix, stalledInterval: 250 })),
    Effect.ensuring(deleteKeys(prefix))
  )
}

describe("sends", () => {
  it.live("a bulk send of core-made ids leaves in one write per 250 jobs", () =>
    withBroker((broker, queue) =>
      Effect.gen(function* () {
        // declare the queue's BullMQ objects (and load the scripts) outside the count
        yield* broker.send(queue, [message("first", undefined, { unique: true })])
        const ids = Array.from({ length: 601 }, (_, i) => `b${i}`)
        const { value: results, writes } = yield* countingWrites(
          broker.send(
            queue,
            ids.map((id) => message(id, undefined, { unique: true }))
          )
        )
        expect(results).toHaveLength(601)
        // three groups of at most 250 (another connection writing meanwhile would add one)
        expect(writes).toBeGreaterThanOrEqual(3)
        expect(writes).toBeLessThanOrEqual(4)
        expect((yield* broker.stats(queue)).waiting).toBe(602)
      })
    )
  )
})

describe("acks", () => {
  it.live("acks made in one tick leave in a few socket writes, not one each", () =>
    withBroker((broker, queue) =>
      Effect.gen(function* () {
        const ids = Array.from({ length: 30 }, (_, i) => `a${i}`)
        yield* broker.send(
          queue,
          ids.map((id) => message(id))
        )
        const taken = yield* takeN(broker, queue, ids.length)
        expect(taken).toHaveLength(ids.length)
        const { writes } = yield* countingWrites(
          Effect.forEach(taken, (delivery) => delivery.ack, { concurrency: "unbounded", discard: true })
        )
        // the first ack goes out at once and the other 29 together (a fetch of the next job may add one)
        expect(writes).toBeGreaterThan(0)
        expect(writes).toBeLessThanOrEqual(4)
        const stats = yield* broker.stats(queue)
        expect(stats.active).toBe(0)
        expect(stats.waiting).toBe(0)
      })
    )
  )
})
