import { Errors } from "@errand/core"
import { describe, expect, it } from "@effect/vitest"
import * as amqp from "amqplib"
import { Effect, Exit } from "effect"
import { RabbitMQBroker } from "../src/index.js"
import { message, takeAtLeast, uniqueQueue, url } from "./helpers.js"

const failure = <A, E>(exit: Exit.Exit<A, E>): E => {
  if (Exit.isSuccess(exit)) throw new Error("expected a failure")
  const error = exit.cause.reasons.find((reason) => reason._tag === "Fail")
  if (error === undefined || error._tag !== "Fail")
    throw new Error(`expected a typed failure, got ${String(exit.cause)}`)
  return error.error
}

const brokerFailure = <A, E>(exit: Exit.Exit<A, E>): Errors.BrokerError => {
  const error = failure(exit)
  if (!(error instanceof Errors.BrokerError)) throw new Error(`expected a BrokerError, got ${String(error)}`)
  return error
}

describe("connection and publishing errors", () => {
  it.live("a wrong password is Unauthorized and the message shows host:port only", () =>
    Effect.gen(function* () {
      const parsed = new URL(url)
      parsed.password = "wrong-Pa55word"
      const exit = yield* Effect.exit(Effect.scoped(RabbitMQBroker.make({ url: parsed.toString() })))
      const error = brokerFailure(exit)
      expect(error).toBeInstanceOf(Errors.BrokerError)
      expect(error.reason).toBe("Unauthorized")
      expect(error.operation).toBe("connect")
      expect(error.message).toContain(`${parsed.hostname}:${parsed.port || "5672"}`)
      expect(error.message).not.toContain("wrong-Pa55word")
      expect(error.message).not.toContain("amqp://")
    })
  )

  it.live("connection options (not a URL) work too, with the same error hygiene", () =>
    Effect.gen(function* () {
      const parsed = new URL(url)
      const base = {
        hostname: parsed.hostname,
        port: Number(parsed.port || "5672"),
        username: decodeURIComponent(parsed.username),
        vhost: "/"
      }
      const good = yield* RabbitMQBroker.make({ url: { ...base, password: decodeURIComponent(parsed.password) } })
      expect(good.endpoint).toBe(`${base.hostname}:${base.port}`)
      const error = failure(
        yield* Effect.exit(Effect.scoped(RabbitMQBroker.make({ url: { ...base, password: "0ther-Secret" } })))
      )
      expect(error.reason).toBe("Unauthorized")
      expect(error.message).toContain(`${base.hostname}:${base.port}`)
      expect(error.message).not.toContain("0ther-Secret")
    }).pipe(Effect.scoped)
  )

  it.live("an unreachable broker is a Connection error", () =>
    Effect.gen(function* () {
      const exit = yield* Effect.exit(Effect.scoped(RabbitMQBroker.make({ url: "amqp://u:secret@127.0.0.1:1" })))
      const error = brokerFailure(exit)
      expect(error.reason).toBe("Connection")
      expect(error.message).toContain("127.0.0.1:1")
      expect(error.message).not.toContain("secret")
    })
  )

  it.live("an unroutable publish is a typed Unroutable error, never a silent drop", () =>
    Effect.gen(function* () {
      const broker = yield* RabbitMQBroker.make({ url })
      const queue = uniqueQueue("unroutable")
      yield* Effect.addFinalizer(() => Effect.ignore(broker.deleteQueue(queue)))
      yield* broker.send(queue, [message("declared")])
      // Someone else deletes the work queue behind the adapter's back.
      yield* Effect.promise(async () => {
        const connection = await amqp.connect(url)
        const channel = await connection.createChannel()
        await channel.deleteQueue(queue)
        await connection.close()
      })
      const exit = yield* Effect.exit(broker.send(queue, [message("lost?")]))
      const error = failure(exit)
      expect(error.reason).toBe("Unroutable")
      expect(error.operation).toBe("send")
      // Sends to other queues on the same channel still work.
      const other = uniqueQueue("routable")
      yield* Effect.addFinalizer(() => Effect.ignore(broker.deleteQueue(other)))
      yield* broker.send(other, [message("fine")])
      expect((yield* takeAtLeast(broker, other, 1)).map((d) => d.id)).toEqual(["fine"])
    }).pipe(Effect.scoped)
  )

  it.live("a publish the server refuses on the channel fails at once with its reason, not as a retryable loss", () =>
    Effect.gen(function* () {
      const broker = yield* RabbitMQBroker.make({ url, sendTimeout: 20_000 })
      const queue = uniqueQueue("noexchange")
      yield* Effect.addFinalizer(() => Effect.ignore(broker.deleteQueue(queue)))
      yield* broker.send(queue, [message("declared")])
      // The delay exchange disappears behind the adapter's back.
      yield* Effect.promise(async () => {
        const connection = await amqp.connect(url)
        const channel = await connection.createChannel()
        await channel.deleteExchange(`${queue}~route~${100 * 2 ** 15}`)
        await connection.close()
      })
      const started = Date.now()
      const error = failure(yield* Effect.exit(broker.send(queue, [message("delayed", { delay: 1000 })])))
      expect(error.reason).toBe("NotFound")
      expect(Date.now() - started).toBeLessThan(5000)
      // The publisher channel comes back for the next send.
      yield* broker.send(queue, [message("plain")])
    }).pipe(Effect.scoped)
  )

  it.live("queue names RabbitMQ refuses are reported", () =>
    Effect.gen(function* () {
      const broker = yield* RabbitMQBroker.make({ url })
      expect(broker.validateQueueName("amq.mine")).toContain("amq.")
      expect(broker.validateQueueName("x".repeat(250))).toContain("255")
      expect(broker.validateQueueName("emails")).toBeUndefined()
    }).pipe(Effect.scoped)
  )

  it.live("a declaration conflicting with an existing queue is a typed error", () =>
    Effect.gen(function* () {
      const queue = uniqueQueue("conflict")
      const classic = yield* RabbitMQBroker.make({ url, queueType: "classic" })
      yield* Effect.addFinalizer(() => Effect.ignore(classic.deleteQueue(queue)))
      yield* classic.send(queue, [message("a")])
      const quorum = yield* RabbitMQBroker.make({ url, queueType: "quorum" })
      const error = failure(yield* Effect.exit(quorum.send(queue, [message("b")])))
      expect(error).toBeInstanceOf(Errors.BrokerError)
      expect(error.message).toContain("PRECONDITION")
    }).pipe(Effect.scoped)
  )
})
