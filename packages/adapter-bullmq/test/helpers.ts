import { type Broker, type Errors } from "@errand/core"
import { Effect } from "effect"
import { Redis } from "ioredis"
import { randomUUID } from "node:crypto"
import { BullMQBroker } from "../src/index.js"

export const redisUrl = process.env.REDIS_URL ?? "redis://127.0.0.1:6379"

/** A prefix no other test uses. */
export const uniquePrefix = () => `errand-test-${randomUUID().slice(0, 8)}`

/** A queue name no other test uses. */
export const uniqueQueue = (label = "q") => `${label}-${randomUUID().slice(0, 8)}`

/** A broker layer on the shared test Redis, with a fresh prefix and a short stalled check. */
export const testLayer = (options: BullMQBroker.Options = {}) =>
  BullMQBroker.layer({ url: redisUrl, prefix: uniquePrefix(), stalledInterval: 250, ...options })

/** Delete every key under `prefix` (tests clean up after themselves). */
export const deleteKeys = (prefix: string) =>
  Effect.promise(async () => {
    const redis = new Redis(redisUrl, { lazyConnect: true })
    await redis.connect()
    try {
      let cursor = "0"
      do {
        const [next, keys] = await redis.scan(cursor, "MATCH", `${prefix}:*`, "COUNT", 1000)
        cursor = next
        if (keys.length > 0) await redis.unlink(...keys)
      } while (cursor !== "0")
    } finally {
      redis.disconnect()
    }
  })

/** Count the keys under `prefix`. */
export const countKeys = (prefix: string) =>
  Effect.promise(async () => {
    const redis = new Redis(redisUrl, { lazyConnect: true })
    await redis.connect()
    try {
      let cursor = "0"
      let n = 0
      do {
        const [next, keys] = await redis.scan(cursor, "MATCH", `${prefix}:*`, "COUNT", 1000)
        cursor = next
        n += keys.length
      } while (cursor !== "0")
      return n
    } finally {
      redis.disconnect()
    }
  })

export const message = (
  id: string,
  body = `{"id":"${id}"}`,
  extra: Partial<Broker.OutgoingMessage> = {}
): Broker.OutgoingMessage => ({
  id,
  body,
  delay: 0,
  priority: 0,
  ...extra
})

/** Take until `n` deliveries arrived or `timeout` ms passed. */
export const takeN = (
  broker: Broker.BrokerShape,
  queue: string,
  n: number,
  options: { lease?: number; timeout?: number } = {}
): Effect.Effect<Array<Broker.Delivery>, Errors.BrokerError> =>
  Effect.gen(function* () {
    const out: Array<Broker.Delivery> = []
    const deadline = Date.now() + (options.timeout ?? 10_000)
    while (out.length < n && Date.now() < deadline) {
      const got = yield* broker.take(queue, { max: n - out.length, lease: options.lease ?? 30_000, wait: 500 })
      out.push(...got)
    }
    return out
  })
