import { describe, expect, it } from "@effect/vitest"
import { Effect, Fiber } from "effect"
import { RabbitMQBroker } from "../src/index.js"
import { eventually, message, rabbitmqctl, restartBroker, takeAtLeast, uniqueQueue, url } from "./helpers.js"

describe.each(["classic", "quorum"] as const)("reconnect (%s)", (queueType) => {
  it.live("after the server closes the connection, consumption resumes by itself", () =>
    Effect.gen(function* () {
      const broker = yield* RabbitMQBroker.make({ url, queueType, connectionName: "errand-reconnect-test" })
      const queue = uniqueQueue("reconnect")
      yield* Effect.addFinalizer(() => Effect.ignore(broker.deleteQueue(queue)))
      yield* broker.send(queue, [message("before")])
      const [held] = yield* takeAtLeast(broker, queue, 1)
      const generation = broker.unsafeConsumer(queue)!.generation

      yield* rabbitmqctl("close_all_connections", "test")
      yield* eventually(broker.connectionGeneration, (n) => n > 0)
      // The consumer comes back on a new channel without anyone calling take.
      yield* eventually(
        Effect.sync(() => broker.unsafeConsumer(queue)!),
        (c) => c.generation > generation && c.channel !== undefined
      )
      // The unacked delivery was requeued by the broker; its stale ack is dropped locally.
      yield* held!.ack
      yield* broker.send(queue, [message("after")])
      const got = yield* takeAtLeast(broker, queue, 2)
      expect(got.map((d) => d.id).sort()).toEqual(["after", "before"])
      for (const d of got) yield* d.ack
      expect(yield* broker.stats(queue)).toEqual({ waiting: 0, active: 0, delayed: 0, dead: 0 })
    }).pipe(Effect.scoped)
  )
})

describe("broker restart", () => {
  it.live(
    "stop_app/start_app loses no confirmed message (ready, delayed, dead) and consumers resume",
    () =>
      Effect.gen(function* () {
        // nothing takes during the restart, which can outlast the default idle timeout: keep the
        // consumer, whose own restart is what this test watches
        const broker = yield* RabbitMQBroker.make({ url, consumerIdleTimeout: Number.POSITIVE_INFINITY })
        const queue = uniqueQueue("restart")
        yield* Effect.addFinalizer(() => Effect.ignore(broker.deleteQueue(queue)))
        yield* broker.send(queue, [message("dead")])
        const [toDie] = yield* takeAtLeast(broker, queue, 1)
        yield* toDie!.deadLetter({ body: "dead-body", reason: "exhausted", error: "e", attempts: 3, failedAt: 1 })
        yield* broker.send(queue, [
          ...Array.from({ length: 20 }, (_, i) => message(`ready-${i}`)),
          message("delayed", { delay: 4000 })
        ])
        const generation = broker.unsafeConsumer(queue)!.generation

        yield* restartBroker
        yield* eventually(
          Effect.sync(() => broker.unsafeConsumer(queue)!),
          (c) => c.generation > generation && c.channel !== undefined,
          60_000
        )
        const got = yield* takeAtLeast(broker, queue, 21, 30_000)
        expect(got.map((d) => d.id).sort()).toEqual(
          [...Array.from({ length: 20 }, (_, i) => `ready-${i}`), "delayed"].sort()
        )
        for (const d of got) yield* d.ack
        expect(yield* broker.deadLetters.count(queue)).toBe(1)
        expect((yield* broker.deadLetters.list(queue, { offset: 0, limit: 10 }))[0]?.body).toBe("dead-body")
      }).pipe(Effect.scoped),
    120_000
  )

  it.live(
    "sends during a restart either fail typed or are kept: no confirmed message is lost",
    () =>
      Effect.gen(function* () {
        const broker = yield* RabbitMQBroker.make({ url, queueType: "quorum", sendTimeout: 60_000 })
        const queue = uniqueQueue("restart-send")
        yield* Effect.addFinalizer(() => Effect.ignore(broker.deleteQueue(queue)))
        yield* broker.send(queue, [message("first")])
        const confirmed: Array<string> = []
        const failed: Array<string> = []
        let stop = false
        const sender = yield* Effect.forkChild(
          Effect.gen(function* () {
            for (let i = 0; !stop && i < 10_000; i++) {
              const id = `m${i}`
              const exit = yield* Effect.exit(broker.send(queue, [message(id)]))
              if (exit._tag === "Success") confirmed.push(id)
              else failed.push(id)
            }
          })
        )
        yield* eventually(
          Effect.sync(() => confirmed.length),
          (n) => n >= 20
        )
        yield* restartBroker
        const afterRestart = confirmed.length
        yield* eventually(
          Effect.sync(() => confirmed.length),
          (n) => n >= afterRestart + 20,
          60_000
        )
        stop = true
        yield* Fiber.join(sender)
        const expected = new Set(["first", ...confirmed])
        const seen = new Set<string>()
        const deadline = Date.now() + 60_000
        while ([...expected].some((id) => !seen.has(id)) && Date.now() < deadline) {
          const got = yield* broker.take(queue, { max: 100, lease: 30_000, wait: 500 })
          for (const d of got) {
            seen.add(d.id)
            yield* d.ack
          }
        }
        expect([...expected].filter((id) => !seen.has(id))).toEqual([])
        // Every failure was typed (the exit above), never a defect; report for the record.
        expect(failed.length).toBeLessThan(confirmed.length)
      }).pipe(Effect.scoped),
    180_000
  )
})
