import { describe, expect, it } from "@effect/vitest"
import { Broker } from "@errand/core"
import { Effect, Fiber, Layer } from "effect"
import { afterAll, beforeAll } from "vitest"
import { SqsBroker } from "../src/index.js"
import * as Fauxqs from "./fauxqs.js"

let emulator: Fauxqs.Emulator
beforeAll(async () => {
  emulator = await Fauxqs.start()
})
afterAll(async () => {
  await emulator?.stop()
})

describe("visibility heartbeat", () => {
  it.live("extendLease keeps a handler that outlives the visibility timeout single; it stops after settle", () =>
    Effect.gen(function* () {
      const broker = yield* Broker.Broker
      const queue = Fauxqs.queueName("heartbeat")
      yield* Effect.gen(function* () {
        yield* broker.send(queue, [{ id: "long", body: '{"v":1}', delay: 0, priority: 0 }])
        const [delivery] = yield* broker.take(queue, { max: 1, lease: 1000, wait: 2000 })
        expect(delivery).toBeDefined()
        // the "handler" runs 3.5 s against a 1 s lease, heartbeating every 400 ms
        const heartbeat = yield* Effect.forkChild(
          Effect.forever(Effect.andThen(delivery!.extendLease(1000), Effect.sleep(400)))
        )
        const started = Date.now()
        let stolen = 0
        while (Date.now() - started < 3500) {
          stolen += (yield* broker.take(queue, { max: 1, lease: 1000, wait: 1000 })).length
        }
        expect(stolen).toBe(0)
        yield* delivery!.ack
        // a settled delivery's heartbeat is a no-op: no error even though the message is gone
        yield* delivery!.extendLease(1000)
        yield* Effect.sleep(500)
        expect(heartbeat.pollUnsafe()).toBeUndefined() // still running, never failed
        yield* Fiber.interrupt(heartbeat)
        expect(yield* broker.stats(queue)).toEqual({ waiting: 0, active: 0, delayed: 0, dead: 0 })
      }).pipe(Effect.ensuring(Effect.ignore(broker.deleteQueue(queue))))
    }).pipe(Effect.provide(Layer.fresh(SqsBroker.layer(Fauxqs.clientOptions(emulator.endpoint)))))
  )

  it.live("without a heartbeat the same handler loses its message to another taker", () =>
    Effect.gen(function* () {
      const broker = yield* Broker.Broker
      const queue = Fauxqs.queueName("heartbeat")
      yield* Effect.gen(function* () {
        yield* broker.send(queue, [{ id: "long", body: '{"v":1}', delay: 0, priority: 0 }])
        const [delivery] = yield* broker.take(queue, { max: 1, lease: 1000, wait: 2000 })
        expect(delivery).toBeDefined()
        const started = Date.now()
        let stolen: ReadonlyArray<Broker.Delivery> = []
        while (stolen.length === 0 && Date.now() - started < 5000) {
          stolen = yield* broker.take(queue, { max: 1, lease: 30_000, wait: 1000 })
        }
        expect(stolen.length).toBe(1)
        // the old holder's heartbeat now reports the lost lease
        const error = yield* Effect.flip(delivery!.extendLease(1000))
        expect(error.reason).toBe("NotFound")
        yield* stolen[0]!.ack
      }).pipe(Effect.ensuring(Effect.ignore(broker.deleteQueue(queue))))
    }).pipe(Effect.provide(Layer.fresh(SqsBroker.layer(Fauxqs.clientOptions(emulator.endpoint)))))
  )
})
