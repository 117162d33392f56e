import { describe, expect, it } from "@effect/vitest"
import { GetQueueAttributesCommand, GetQueueUrlCommand } from "@aws-sdk/client-sqs"
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

describe("RedrivePolicy safety net", () => {
  it.live(
    "created queues carry a RedrivePolicy to the dead-letter queue; a poison message moved by SQS is listed once",
    () =>
      Effect.gen(function* () {
        const broker = yield* Broker.Broker
        const { client } = yield* SqsBroker.SqsBroker
        const queue = Fauxqs.queueName("redrive")
        yield* Effect.gen(function* () {
          yield* broker.send(queue, [{ id: "poison", body: '{"v":1}', delay: 0, priority: 0 }])
          const url = (yield* Effect.promise(() => client.send(new GetQueueUrlCommand({ QueueName: queue })))).QueueUrl!
          const attributes = yield* Effect.promise(() =>
            client.send(new GetQueueAttributesCommand({ QueueUrl: url, AttributeNames: ["RedrivePolicy"] }))
          )
          const policy = JSON.parse(attributes.Attributes!.RedrivePolicy!)
          expect(policy.maxReceiveCount).toBe(2)
          expect(policy.deadLetterTargetArn).toMatch(new RegExp(`:${SqsBroker.deadLetterQueueName(queue)}$`, "u"))
          // the process "crashes" twice: received, never settled
          for (let i = 0; i < 2; i++) {
            const got = yield* broker.take(queue, { max: 1, lease: 1000, wait: 3000 })
            expect(got.length).toBe(1)
            yield* Effect.sleep(1100)
          }
          // the third receive makes SQS move it
          let moved = 0
          const started = Date.now()
          while (moved === 0 && Date.now() - started < 10_000) {
            expect((yield* broker.take(queue, { max: 1, lease: 1000, wait: 1000 })).length).toBe(0)
            moved = yield* broker.deadLetters.count(queue)
          }
          expect(moved).toBe(1)
          expect(yield* broker.stats(queue)).toEqual({ waiting: 0, active: 0, delayed: 0, dead: 1 })
          const [entry] = yield* broker.deadLetters.list(queue, { offset: 0, limit: 10 })
          expect(entry).toMatchObject({ id: "poison", body: '{"v":1}', reason: "exhausted" })
          expect(entry!.error).toMatch(/RedrivePolicy/u)
        }).pipe(Effect.ensuring(Effect.ignore(broker.deleteQueue(queue))))
      }).pipe(
        Effect.provide(
          Layer.fresh(
            SqsBroker.layer({ ...Fauxqs.clientOptions(emulator.endpoint), redrivePolicy: { maxReceiveCount: 2 } })
          )
        )
      )
  )
})
