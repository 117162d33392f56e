import { RabbitMQBroker } from "@errand/adapter-rabbitmq"
import { Job, Producer, Worker } from "@errand/core"
import { Effect, Layer, Schema } from "effect"
const queue = `exp-lat-${Date.now()}`
const job = Job.make("noop", { queue, payload: Schema.Struct({ i: Schema.Number }) })
const sent: number[] = [],
  confirmed: number[] = [],
  started: number[] = []
const program = Effect.gen(function* () {
  yield* Worker.run({
    queue,
    concurrency: 10,
    handlers: [
      Worker.handler(job, ({ i }) =>
        Effect.sync(() => {
          started[i] = performance.now()
        })
      )
    ]
  })
  yield* Effect.sleep(500)
  for (let i = 0; i < 30; i++) {
    sent[i] = performance.now()
    yield* Effect.forkChild(
      Effect.tap(Producer.enqueue(job, { i }), () =>
        Effect.sync(() => {
          confirmed[i] = performance.now()
        })
      )
    )
    yield* Effect.sleep(25)
  }
  yield* Effect.sleep(1000)
  console.log(
    "confirm / start (ms):",
    sent.map((t, i) => [confirmed[i]! - t, started[i]! - t].map((x) => x.toFixed(1)).join(" / ")).join(",  ")
  )
  const broker = yield* (yield* Effect.promise(() => import("@errand/core"))).Broker.Broker
  yield* broker.deleteQueue(queue)
})
await Effect.runPromise(
  program.pipe(Effect.scoped, Effect.provide(Producer.layer.pipe(Layer.provideMerge(RabbitMQBroker.layer({})))))
)
