import { Errors } from "@errand/core"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Exit } from "effect"
import { RabbitMQBroker } from "../src/index.js"
import { eventually, message, rabbitmqctl, takeAtLeast, uniqueQueue, url, waitConnectable } from "./helpers.js"

const brokerPid = rabbitmqctl("eval", "os:getpid().").pipe(Effect.map((out) => Number(out.replace(/[^0-9]/g, ""))))

const signal = (pid: number, name: NodeJS.Signals) => Effect.sync(() => process.kill(pid, name))

describe("outages", () => {
  it.live(
    "a send while the broker is down fails typed within sendTimeout; sends work again after",
    () =>
      Effect.gen(function* () {
        const broker = yield* RabbitMQBroker.make({ url, sendTimeout: 3000 })
        const queue = uniqueQueue("down")
        yield* Effect.addFinalizer(() => Effect.ignore(broker.deleteQueue(queue)))
        yield* broker.send(queue, [message("before")])
        yield* Effect.addFinalizer(() => Effect.ignore(Effect.andThen(rabbitmqctl("start_app"), waitConnectable)))
        yield* rabbitmqctl("stop_app")
        const started = Date.now()
        const exit = yield* Effect.exit(broker.send(queue, [message("during")]))
        expect(Date.now() - started).toBeLessThan(8000)
        expect(Exit.isFailure(exit)).toBe(true)
        if (Exit.isFailure(exit)) {
          const reason = exit.cause.reasons.find((r) => r._tag === "Fail")
          const error = reason?._tag === "Fail" ? reason.error : undefined
          expect(error).toBeInstanceOf(Errors.BrokerError)
          expect(["Connection", "Timeout"]).toContain(error?.reason)
          expect(error?.message).not.toContain("guest:guest")
        }
        yield* rabbitmqctl("start_app")
        yield* waitConnectable
        yield* eventually(Effect.exit(broker.send(queue, [message("after")])), Exit.isSuccess, 30_000)
        const got = yield* takeAtLeast(broker, queue, 2, 30_000)
        expect(got.map((d) => d.id)).toContain("before")
        expect(got.map((d) => d.id)).toContain("after")
        for (const d of got) yield* d.ack
      }).pipe(Effect.scoped),
    120_000
  )

  it.live(
    "a heartbeat timeout (frozen broker) does not crash; consumption resumes",
    () =>
      Effect.gen(function* () {
        const broker = yield* RabbitMQBroker.make({ url: `${url}?heartbeat=1` })
        const queue = uniqueQueue("frozen")
        yield* Effect.addFinalizer(() => Effect.ignore(broker.deleteQueue(queue)))
        yield* broker.send(queue, [message("one")])
        const [one] = yield* takeAtLeast(broker, queue, 1)
        yield* one!.ack
        const pid = yield* brokerPid
        expect(pid).toBeGreaterThan(0)
        yield* Effect.addFinalizer(() => Effect.ignore(signal(pid, "SIGCONT")))
        yield* signal(pid, "SIGSTOP")
        // amqplib notices the missing heartbeats and closes the socket: no crash, a reconnect.
        yield* eventually(broker.connectionGeneration, (n) => n > 0, 20_000).pipe(
          Effect.ensuring(Effect.ignore(signal(pid, "SIGCONT")))
        )
        yield* waitConnectable
        yield* eventually(Effect.exit(broker.send(queue, [message("two")])), Exit.isSuccess, 30_000)
        const [two] = yield* takeAtLeast(broker, queue, 1, 30_000)
        expect(two?.id).toBe("two")
        yield* two!.ack
      }).pipe(Effect.scoped),
    120_000
  )
})
