import { describe, expect, it } from "vitest"
import type { Client } from "../src/internal/client.js"
import { QueueConsumer } from "../src/internal/consumer.js"

// The idle check touches no channel: a consumer that never started needs no client at all.
const noClient = {} as Client
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/** Wait (at most 5 s, so a loaded machine only slows it) until `done` holds. */
const until = async (done: () => boolean) => {
  const limit = Date.now() + 5000
  while (!done() && Date.now() < limit) await sleep(5)
}

const consumer = (idleTimeout: number) => {
  const idled: Array<number> = []
  const started = Date.now()
  const c = new QueueConsumer(noClient, "q", idleTimeout, () => idled.push(Date.now() - started))
  return { c, idled }
}

describe("a consumer's idle check", () => {
  it("hands the consumer over once no take touched it for the timeout, once", async () => {
    const { c, idled } = consumer(60)
    c.touch()
    await sleep(30)
    c.touch()
    await sleep(40)
    expect(idled).toEqual([])
    await until(() => idled.length > 0)
    expect(idled).toHaveLength(1)
    // 60 ms after the last touch (at 30 ms), not after the first
    expect(idled[0]).toBeGreaterThanOrEqual(85)
    await sleep(100)
    expect(idled).toHaveLength(1)
  })

  it("a replacement being published (retry, dead-letter) keeps it in use however long it takes", async () => {
    const { c, idled } = consumer(40)
    c.touch()
    c.beginReplace()
    await sleep(150)
    expect(idled).toEqual([])
    c.endReplace()
    await sleep(20)
    expect(idled).toEqual([])
    await until(() => idled.length > 0)
    expect(idled).toHaveLength(1)
  })

  it("a waiting take keeps it in use", async () => {
    const { c, idled } = consumer(40)
    c.touch()
    const unregister = c.onArrival(() => {}, Date.now() + 10_000)
    await sleep(150)
    expect(idled).toEqual([])
    unregister()
    await until(() => idled.length > 0)
    expect(idled).toHaveLength(1)
  })

  it("never, with an infinite timeout", async () => {
    const { c, idled } = consumer(Number.POSITIVE_INFINITY)
    c.touch()
    await sleep(50)
    expect(idled).toEqual([])
  })
})
