import { describe, expect, it } from "@effect/vitest"
import { Broker } from "@errand/core"
import { Context, Effect, Exit, Fiber, Layer, Scope } from "effect"
import { BullMQBroker } from "../src/index.js"
import { deleteKeys, message, redisUrl, takeN, uniquePrefix, uniqueQueue } from "./helpers.js"

const build = (options: BullMQBroker.Options, scope: Scope.Scope) =>
  Layer.buildWithScope(BullMQBroker.layer(options), scope).pipe(
    Effect.map((context) => Context.get(context, Broker.Broker))
  )

describe("shutdown", () => {
  it.live("closing the scope releases unsettled deliveries back to wait at once, and does not hang", () =>
    Effect.gen(function* () {
      const options = { url: redisUrl, prefix: uniquePrefix(), stalledInterval: 250 }
      const queue = uniqueQueue("close")
      const scope = yield* Scope.make()
      const broker = yield* build(options, scope)
      yield* broker.send(queue, [message("a"), message("b"), message("c")])
      const taken = yield* takeN(broker, queue, 2, { lease: 60_000 })
      expect(taken.length).toBe(2)
      yield* taken[0]!.ack
      // A take blocked in Redis while the scope closes.
      yield* broker.take(queue, { max: 5, lease: 60_000, wait: 100 })
      const blocked = yield* Effect.forkChild(broker.take(uniqueQueue("idle"), { max: 1, lease: 1000, wait: 20_000 }))
      yield* Effect.sleep(200)

      const started = Date.now()
      yield* Fiber.interrupt(blocked)
      yield* Scope.close(scope, Exit.void)
      expect(Date.now() - started).toBeLessThan(3000)

      const checkScope = yield* Scope.make()
      const checker = yield* build(options, checkScope)
      // The lease was 60 s: only the release can explain these counts.
      expect(yield* checker.stats(queue)).toEqual({ waiting: 2, active: 0, delayed: 0, dead: 0 })
      const again = yield* takeN(checker, queue, 2, { lease: 60_000 })
      expect(again.map((d) => d.id).sort()).toEqual(["b", "c"])
      yield* Effect.forEach(again, (d) => d.ack)
      yield* checker.deleteQueue(queue)
      yield* Scope.close(checkScope, Exit.void)
      yield* deleteKeys(options.prefix)
    })
  )

  it.live("interrupting a blocked take loses nothing", () =>
    Effect.gen(function* () {
      const broker = yield* Broker.Broker
      const queue = uniqueQueue("interrupt")
      const fiber = yield* Effect.forkChild(broker.take(queue, { max: 1, lease: 60_000, wait: 10_000 }))
      yield* Effect.sleep(300)
      yield* Fiber.interrupt(fiber)
      yield* broker.send(queue, [message("after")])
      const [d] = yield* broker.take(queue, { max: 1, lease: 60_000, wait: 2000 })
      expect(d?.id).toBe("after")
      yield* d!.ack
      yield* broker.deleteQueue(queue)
    }).pipe(Effect.provide(BullMQBroker.layer({ url: redisUrl, prefix: uniquePrefix() })))
  )
})

describe("jobs fetched by an ack", () => {
  it.live("go to the next take; one nobody takes goes back to wait, unlocked, within a second", () =>
    Effect.gen(function* () {
      const broker = yield* Broker.Broker
      const queue = uniqueQueue("prefetch")
      // an id and a body that only survive if the job the ack's script returned is decoded exactly
      const bBody = JSON.stringify({ text: 'quote " backslash \\ ünïcode ✓', n: [1.5, -2] })
      yield* broker.send(queue, [message("a"), message("b:%3A", bBody), message("c")])
      const [a] = yield* takeN(broker, queue, 1, { lease: 60_000 })
      expect(a?.id).toBe("a")
      // the ack's script also locks the next job ("b") for this broker
      yield* a!.ack
      expect(yield* broker.stats(queue)).toEqual({ waiting: 1, active: 1, delayed: 0, dead: 0 })
      const [b] = yield* broker.take(queue, { max: 5, lease: 60_000, wait: 0 })
      expect(b?.id).toBe("b:%3A")
      expect(b?.body).toBe(bBody)
      expect(b?.receiveCount).toBe(1)
      // acked with nothing taken after it: "c" is fetched, then handed back
      yield* b!.ack
      expect(yield* broker.stats(queue)).toEqual({ waiting: 0, active: 1, delayed: 0, dead: 0 })
      yield* Effect.sleep(1500)
      // the lease was 60 s: only the hand-back explains this
      expect(yield* broker.stats(queue)).toEqual({ waiting: 1, active: 0, delayed: 0, dead: 0 })
      const [c] = yield* broker.take(queue, { max: 1, lease: 60_000, wait: 1000 })
      expect(c?.id).toBe("c")
      expect(c?.receiveCount).toBe(1)
      yield* c!.ack
      yield* broker.deleteQueue(queue)
    }).pipe(Effect.provide(BullMQBroker.layer({ url: redisUrl, prefix: uniquePrefix() })))
  )
})
