import { describe, expect, it } from "@effect/vitest"
import { Effect, Exit, Scope } from "effect"
import { RabbitMQBroker } from "../src/index.js"
import { message, takeAtLeast, uniqueQueue, url } from "./helpers.js"

describe("coalesced acks", () => {
  it.live("acks sent together never settle a delivery that was not acked", () =>
    Effect.gen(function* () {
      const queue = uniqueQueue("acks")
      const scope = yield* Scope.make()
      const broker = yield* RabbitMQBroker.make({ url }).pipe(Scope.provide(scope))
      const ids = ["m0", "m1", "m2", "m3", "m4", "m5"]
      yield* broker.send(
        queue,
        ids.map((id) => message(id))
      )
      const got = yield* takeAtLeast(broker, queue, ids.length)
      expect(got.map((d) => d.id)).toEqual(ids)
      const [m0, m1, _m2, m3, m4, m5] = got
      // One synchronous run: m0 and m1 lie below the unsettled m2, m3 and m5 above it.
      yield* Effect.all([m1!.ack, m0!.ack, m5!.ack, m3!.ack])
      // A later run: m4 is now the highest settled in a row above m2.
      yield* Effect.yieldNow
      yield* m4!.ack
      yield* Effect.yieldNow
      // Closing requeues what is still unacked on the broker: m2 alone.
      yield* Scope.close(scope, Exit.void)

      const next = yield* RabbitMQBroker.make({ url })
      yield* Effect.addFinalizer(() => Effect.ignore(next.deleteQueue(queue)))
      const again = yield* takeAtLeast(next, queue, 1)
      expect(again.map((d) => d.id)).toEqual(["m2"])
      expect(yield* next.take(queue, { max: 10, lease: 1000, wait: 300 })).toEqual([])
      yield* again[0]!.ack
      yield* Effect.yieldNow
      expect(yield* next.stats(queue)).toEqual({ waiting: 0, active: 0, delayed: 0, dead: 0 })
    }).pipe(Effect.scoped)
  )

  it.live("an ack right before the layer closes is not lost", () =>
    Effect.gen(function* () {
      const queue = uniqueQueue("acks-close")
      const scope = yield* Scope.make()
      const broker = yield* RabbitMQBroker.make({ url }).pipe(Scope.provide(scope))
      yield* broker.send(queue, [message("a"), message("b")])
      const [a, b] = yield* takeAtLeast(broker, queue, 2)
      // no yield between the ack and the close: the close sends the pending ack first
      yield* a!.ack
      yield* Scope.close(scope, Exit.void)

      const next = yield* RabbitMQBroker.make({ url })
      yield* Effect.addFinalizer(() => Effect.ignore(next.deleteQueue(queue)))
      const again = yield* takeAtLeast(next, queue, 1)
      expect(again.map((d) => d.id)).toEqual([b!.id])
      expect(yield* next.take(queue, { max: 10, lease: 1000, wait: 300 })).toEqual([])
      yield* again[0]!.ack
    }).pipe(Effect.scoped)
  )
})
