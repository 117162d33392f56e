import { describe, expect, it } from "@effect/vitest"
import { Broker } from "@errand/core"
import { Context, Effect, Layer, Logger } from "effect"
import { BullMQBroker } from "../src/index.js"
import { redisUrl, uniquePrefix } from "./helpers.js"
import { redisServer } from "./redisServer.js"

const capture = () => {
  const lines: Array<string> = []
  const logger = Logger.make((options) => lines.push(`${options.logLevel}: ${String(options.message)}`))
  return { lines, layer: Logger.layer([logger]) }
}

const start = (url: string, evictionPolicy?: BullMQBroker.EvictionPolicyMode) =>
  Layer.build(BullMQBroker.layer({ url, prefix: uniquePrefix(), ...(evictionPolicy ? { evictionPolicy } : {}) }))

describe("maxmemory-policy check", () => {
  it.live("refuse: a Redis that evicts keys is refused with UnsafeEvictionPolicy", () =>
    Effect.gen(function* () {
      const server = yield* redisServer(["--maxmemory-policy", "allkeys-lru"])
      const error = yield* Effect.flip(start(server.url, "refuse"))
      expect(error._tag).toBe("UnsafeEvictionPolicy")
      if (error._tag === "UnsafeEvictionPolicy") {
        expect(error.policy).toBe("allkeys-lru")
        expect(error.message).toContain(`127.0.0.1:${server.port}`)
      }
    }).pipe(Effect.scoped)
  )

  it.live("warn (the default): starts and logs a loud warning", () => {
    const { lines, layer } = capture()
    return Effect.gen(function* () {
      const server = yield* redisServer(["--maxmemory-policy", "volatile-lru"])
      const context = yield* start(server.url)
      expect(Context.get(context, BullMQBroker.BullMQBroker).evictionPolicy).toBe("volatile-lru")
      expect(lines.some((l) => l.startsWith("Warn") && l.includes("volatile-lru") && l.includes("noeviction"))).toBe(
        true
      )
    }).pipe(Effect.scoped, Effect.provide(layer))
  })

  it.live("ignore: no check, no warning", () => {
    const { lines, layer } = capture()
    return Effect.gen(function* () {
      const server = yield* redisServer(["--maxmemory-policy", "allkeys-random"])
      const context = yield* start(server.url, "ignore")
      expect(Context.get(context, Broker.Broker).name).toBe("bullmq")
      expect(lines.filter((l) => l.includes("maxmemory-policy"))).toEqual([])
    }).pipe(Effect.scoped, Effect.provide(layer))
  })

  it.live("noeviction passes even with refuse", () =>
    Effect.gen(function* () {
      const server = yield* redisServer(["--maxmemory-policy", "noeviction"])
      const context = yield* start(server.url, "refuse")
      expect(Context.get(context, BullMQBroker.BullMQBroker).evictionPolicy).toBe("noeviction")
    }).pipe(Effect.scoped)
  )

  it.live("the shared test Redis reports its policy", () =>
    Effect.gen(function* () {
      const context = yield* start(redisUrl)
      expect(typeof Context.get(context, BullMQBroker.BullMQBroker).evictionPolicy).toBe("string")
    }).pipe(Effect.scoped)
  )
})
