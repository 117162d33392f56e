import type { Broker } from "@errand/core"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Option } from "effect"
import { RabbitMQBroker } from "../src/index.js"
import { message, takeAtLeast, uniqueQueue, url } from "./helpers.js"

const record = (body: string, attempts: number): Broker.DeadLetterRecord => ({
  body,
  reason: attempts === 0 ? "undecodable" : "exhausted",
  error: `boom ${attempts} ${"x".repeat(20_000)}`,
  attempts,
  failedAt: 1_700_000_000_000 + attempts
})

describe.each(["classic", "quorum"] as const)("dead letters (%s)", (queueType) => {
  it.live("list, get, count, redrive, purge on the broker", () =>
    Effect.gen(function* () {
      const broker = yield* RabbitMQBroker.make({ url, queueType })
      const queue = uniqueQueue("dlq")
      yield* Effect.addFinalizer(() => Effect.ignore(broker.deleteQueue(queue)))
      const ids = ["j0", "j1", "j2", "j3", "j4"]
      yield* broker.send(
        queue,
        ids.map((id) => message(id))
      )
      const deliveries = yield* takeAtLeast(broker, queue, 5)
      // dead-letter in a known order
      for (const id of ids) {
        const delivery = deliveries.find((d) => d.id === id)!
        yield* delivery.deadLetter(record(`body-${id}`, Number(id.slice(1))))
        yield* delivery.ack // no-op
      }
      expect(yield* broker.stats(queue)).toEqual({ waiting: 0, active: 0, delayed: 0, dead: 5 })
      expect(yield* broker.deadLetters.count(queue)).toBe(5)

      const all = yield* broker.deadLetters.list(queue, { offset: 0, limit: 100 })
      expect(all.map((e) => e.id)).toEqual(ids)
      expect(all[3]).toMatchObject({
        id: "j3",
        body: "body-j3",
        reason: "exhausted",
        attempts: 3,
        failedAt: 1_700_000_000_003
      })
      expect(all[0]!.reason).toBe("undecodable")
      expect(all[3]!.error.startsWith("boom 3 xxx")).toBe(true)
      // listing does not consume, and keeps the order
      expect((yield* broker.deadLetters.list(queue, { offset: 1, limit: 2 })).map((e) => e.id)).toEqual(["j1", "j2"])
      expect((yield* broker.deadLetters.list(queue, { offset: 0, limit: 100 })).map((e) => e.id)).toEqual(ids)
      expect(yield* broker.deadLetters.count(queue)).toBe(5)

      expect(Option.getOrUndefined(yield* broker.deadLetters.get(queue, "j2"))?.body).toBe("body-j2")
      expect(Option.isNone(yield* broker.deadLetters.get(queue, "nope"))).toBe(true)

      // redrive two by id, with the message `prepare` returns
      const moved = yield* broker.deadLetters.redrive(queue, {
        ids: ["j1", "j3"],
        prepare: (entry) => ({ id: entry.id, body: `redriven-${entry.body}`, delay: 0, priority: 0 })
      })
      expect(moved).toBe(2)
      expect((yield* broker.deadLetters.list(queue, { offset: 0, limit: 100 })).map((e) => e.id)).toEqual([
        "j0",
        "j2",
        "j4"
      ])
      const back = yield* takeAtLeast(broker, queue, 2)
      expect(back.map((d) => `${d.id}:${d.body}`).sort()).toEqual(["j1:redriven-body-j1", "j3:redriven-body-j3"])
      for (const d of back) yield* d.ack

      // purge by id, then all
      expect(yield* broker.deadLetters.purge(queue, ["j2", "missing"])).toBe(1)
      expect((yield* broker.deadLetters.list(queue, { offset: 0, limit: 100 })).map((e) => e.id)).toEqual(["j0", "j4"])
      expect(yield* broker.deadLetters.purge(queue)).toBe(2)
      expect(yield* broker.deadLetters.count(queue)).toBe(0)

      // redrive all
      yield* broker.send(queue, [message("k")])
      const [k] = yield* takeAtLeast(broker, queue, 1)
      yield* k!.deadLetter(record("body-k", 2))
      expect(
        yield* broker.deadLetters.redrive(queue, {
          prepare: (entry) => ({ id: entry.id, body: entry.body, delay: 0, priority: 0 })
        })
      ).toBe(1)
      const [again] = yield* takeAtLeast(broker, queue, 1)
      expect(again!.body).toBe("body-k")
      yield* again!.ack
      expect(yield* broker.stats(queue)).toEqual({ waiting: 0, active: 0, delayed: 0, dead: 0 })
    }).pipe(Effect.scoped)
  )
})
