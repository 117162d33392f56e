import { describe, expect, it } from "@effect/vitest"
import { CreateQueueCommand, SQSClient } from "@aws-sdk/client-sqs"
import { Broker } from "@errand/core"
import { Effect, Layer } from "effect"
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

describe("payload limit", () => {
  it.live(
    "a queue whose MaximumMessageSize is below the declared limit refuses with PayloadTooLarge, nothing sent",
    () =>
      Effect.gen(function* () {
        const broker = yield* Broker.Broker
        const queue = Fauxqs.queueName("small")
        const options = Fauxqs.clientOptions(emulator.endpoint)
        const raw = new SQSClient({
          endpoint: options.endpoint!,
          region: options.region!,
          credentials: options.credentials!
        })
        yield* Effect.promise(() =>
          raw.send(new CreateQueueCommand({ QueueName: queue, Attributes: { MaximumMessageSize: "2048" } }))
        )
        raw.destroy()
        yield* Effect.gen(function* () {
          expect(broker.capabilities.maxPayloadBytes).toBeGreaterThan(3000)
          const error = yield* Effect.flip(
            broker.send(queue, [
              { id: "ok", body: "x".repeat(100), delay: 0, priority: 0 },
              { id: "big", body: "x".repeat(3000), delay: 0, priority: 0 }
            ])
          )
          expect(error).toMatchObject({ _tag: "BrokerError", reason: "PayloadTooLarge", operation: "send" })
          expect(error.message).toContain("2048")
          expect((yield* broker.stats(queue)).waiting).toBe(0)
          yield* broker.send(queue, [{ id: "ok", body: "x".repeat(1000), delay: 0, priority: 0 }])
          expect((yield* broker.stats(queue)).waiting).toBe(1)
        }).pipe(Effect.ensuring(Effect.ignore(broker.deleteQueue(queue))))
      }).pipe(Effect.provide(Layer.fresh(SqsBroker.layer(Fauxqs.clientOptions(emulator.endpoint)))))
  )

  it.live("a body of exactly capabilities.maxPayloadBytes is accepted on a queue the adapter created", () =>
    Effect.gen(function* () {
      const broker = yield* Broker.Broker
      const queue = Fauxqs.queueName("exact")
      yield* Effect.gen(function* () {
        const id = "j".repeat(200)
        yield* broker.send(queue, [
          { id, body: "é".repeat(broker.capabilities.maxPayloadBytes / 2), delay: 0, priority: 0 }
        ])
        const [delivery] = yield* broker.take(queue, { max: 1, lease: 30_000, wait: 2000 })
        expect(delivery!.id).toBe(id)
        expect(Buffer.byteLength(delivery!.body)).toBe(broker.capabilities.maxPayloadBytes)
        // dead-lettering the largest body still fits the dead-letter queue (the error text is cut to fit)
        yield* delivery!.deadLetter({
          body: delivery!.body,
          reason: "exhausted",
          error: "e".repeat(5000),
          attempts: 3,
          failedAt: 1
        })
        const [entry] = yield* broker.deadLetters.list(queue, { offset: 0, limit: 1 })
        expect(entry!.body).toBe(delivery!.body)
        expect(entry!.error.startsWith("eee")).toBe(true)
      }).pipe(Effect.ensuring(Effect.ignore(broker.deleteQueue(queue))))
    }).pipe(Effect.provide(Layer.fresh(SqsBroker.layer(Fauxqs.clientOptions(emulator.endpoint)))))
  )
})
