import { describe, expect, it } from "@effect/vitest"
import { Effect, Exit, Scope } from "effect"
import { RabbitMQBroker } from "../src/index.js"
import { eventually, message, takeAtLeast, uniqueQueue, url } from "./helpers.js"

describe("closing the layer", () => {
  it.live("requeues buffered and unsettled deliveries and does not hang", () =>
    Effect.gen(function* () {
      const queue = uniqueQueue("close")
      const scope = yield* Scope.make()
      const broker = yield* RabbitMQBroker.make({ url }).pipe(Scope.provide(scope))
      yield* broker.send(queue, [message("held")])
      const [held] = yield* takeAtLeast(broker, queue, 1)
      // prefetch is now 1 (in flight) + 5; these four get buffered locally, not handed out.
      yield* broker.take(queue, { max: 5, lease: 1000, wait: 0 })
      yield* broker.send(
        queue,
        ["b1", "b2", "b3", "b4"].map((id) => message(id))
      )
      yield* eventually(broker.stats(queue), (s) => s.waiting === 4 && s.active === 1)
      expect(held!.id).toBe("held")
      const started = Date.now()
      yield* Scope.close(scope, Exit.void)
      expect(Date.now() - started).toBeLessThan(5000)
      // A settle after close is a no-op, not a crash.
      yield* held!.ack

      const next = yield* RabbitMQBroker.make({ url })
      yield* Effect.addFinalizer(() => Effect.ignore(next.deleteQueue(queue)))
      const got = yield* takeAtLeast(next, queue, 5)
      expect(got.map((d) => d.id).sort()).toEqual(["b1", "b2", "b3", "b4", "held"])
      for (const d of got) yield* d.ack
    }).pipe(Effect.scoped)
  )
})
