import { describe, expect, it } from "@effect/vitest"
import { Broker, Errors } from "@errand/core"
import { Context, Effect, Exit, Fiber, Layer, Result, Scope } from "effect"
import { BullMQBroker } from "../src/index.js"
import { message, uniquePrefix, uniqueQueue } from "./helpers.js"
import { redisServer } from "./redisServer.js"

const brokerOn = (url: string, options: BullMQBroker.Options = {}) =>
  Layer.build(BullMQBroker.layer({ url, prefix: uniquePrefix(), stalledInterval: 250, ...options })).pipe(
    Effect.map((context) => Context.get(context, Broker.Broker))
  )

const expectBrokerError = (error: unknown, reasons: ReadonlyArray<string>) => {
  expect(error).toBeInstanceOf(Errors.BrokerError)
  expect(reasons).toContain((error as Errors.BrokerError).reason)
}

describe("connection behaviour", () => {
  it.live("the layer fails with a typed Connection error, bounded by connectTimeout, when Redis is not there", () =>
    Effect.gen(function* () {
      const server = yield* redisServer()
      yield* server.kill
      const started = Date.now()
      const error = yield* Effect.flip(
        brokerOn(`redis://user:s3cret@127.0.0.1:${server.port}`, { connectTimeout: 1000 })
      )
      expect(Date.now() - started).toBeLessThan(3000)
      expectBrokerError(error, ["Connection", "Timeout"])
      expect((error as Errors.BrokerError).message).toContain(`127.0.0.1:${server.port}`)
      expect((error as Errors.BrokerError).message).not.toContain("s3cret")
    }).pipe(Effect.scoped)
  )

  it.live(
    "with sendTimeout 0, send fails fast with Connection while Redis is down, and with Timeout while it hangs",
    () =>
      Effect.gen(function* () {
        const server = yield* redisServer()
        const broker = yield* brokerOn(server.url, { commandTimeout: 500, sendTimeout: 0 })
        const queue = uniqueQueue()
        yield* broker.send(queue, [message("before")])

        yield* server.pause
        let started = Date.now()
        const hung = yield* Effect.flip(broker.send(queue, [message("while-paused")]))
        expectBrokerError(hung, ["Timeout"])
        expect(Date.now() - started).toBeLessThan(2500)
        yield* server.resume

        yield* server.kill
        started = Date.now()
        const down = yield* Effect.flip(broker.send(queue, [message("while-down")]))
        expectBrokerError(down, ["Connection"])
        expect(Date.now() - started).toBeLessThan(1500)
        yield* server.start
      }).pipe(Effect.scoped)
  )

  it.live("send waits out a short outage within sendTimeout, and fails typed after it", () =>
    Effect.gen(function* () {
      const server = yield* redisServer()
      const broker = yield* brokerOn(server.url, { commandTimeout: 500, sendTimeout: 3000 })
      const queue = uniqueQueue()
      yield* server.kill
      const pending = yield* Effect.forkChild(broker.send(queue, [message("during-restart")]))
      yield* Effect.sleep("1 second")
      yield* server.start
      const [result] = yield* Fiber.join(pending)
      expect(result).toEqual({ id: "during-restart", duplicate: false })
      expect((yield* broker.stats(queue)).waiting).toBe(1)

      yield* server.kill
      const started = Date.now()
      const down = yield* Effect.flip(broker.send(queue, [message("still-down")]))
      expectBrokerError(down, ["Connection", "Timeout"])
      expect(Date.now() - started).toBeGreaterThanOrEqual(2500)
      expect(Date.now() - started).toBeLessThan(6000)
      yield* server.start
    }).pipe(Effect.scoped)
  )

  it.live("a worker resumes by itself after Redis comes back; confirmed jobs survive the restart", () =>
    Effect.gen(function* () {
      const server = yield* redisServer()
      const broker = yield* brokerOn(server.url)
      const queue = uniqueQueue()
      yield* broker.send(queue, [message("confirmed-before")])
      const [first] = yield* broker.take(queue, { max: 1, lease: 30_000, wait: 1000 })
      yield* first!.ack
      yield* broker.send(queue, [message("survives")])

      yield* server.kill
      const whileDown = yield* Effect.flip(broker.take(queue, { max: 1, lease: 30_000, wait: 200 }))
      expect(whileDown.reason).toBe("Connection")
      yield* server.start

      // The same broker, no rebuild: poll as core's worker loop would.
      const got: Array<Broker.Delivery> = []
      const deadline = Date.now() + 20_000
      while (got.length === 0 && Date.now() < deadline) {
        const result = yield* Effect.result(broker.take(queue, { max: 1, lease: 30_000, wait: 500 }))
        if (Result.isSuccess(result)) got.push(...result.success)
      }
      expect(got.map((d) => d.id)).toEqual(["survives"])
      yield* got[0]!.ack
      const [sent] = yield* broker.send(queue, [message("after")])
      expect(sent?.duplicate).toBe(false)
    }).pipe(Effect.scoped)
  )

  it.live("closing while Redis is down does not hang", () =>
    Effect.gen(function* () {
      const server = yield* redisServer()
      const scope = yield* Scope.make()
      const broker = yield* Layer.buildWithScope(
        BullMQBroker.layer({ url: server.url, prefix: uniquePrefix(), stalledInterval: 250 }),
        scope
      ).pipe(Effect.map((context) => Context.get(context, Broker.Broker)))
      const queue = uniqueQueue()
      yield* broker.send(queue, [message("held")])
      const [held] = yield* broker.take(queue, { max: 1, lease: 60_000, wait: 1000 })
      expect(held?.id).toBe("held")
      yield* server.kill
      const started = Date.now()
      yield* Scope.close(scope, Exit.void)
      expect(Date.now() - started).toBeLessThan(10_000)
    }).pipe(Effect.scoped)
  )
})
