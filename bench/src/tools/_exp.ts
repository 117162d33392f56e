import { BullMQBroker } from "@errand/adapter-bullmq"
import { Job, Producer, Broker } from "@errand/core"
import { Effect, Layer, Schema } from "effect"
const queue = `exp-seq-${Date.now()}`
const job = Job.make("noop", { queue, payload: Schema.Struct({ i: Schema.Number }) })
const program = Effect.gen(function* () {
  for (let i = 0; i < 300; i++) yield* Producer.enqueue(job, { i })
  const c0 = process.cpuUsage()
  const t = performance.now()
  for (let i = 0; i < 3000; i++) yield* Producer.enqueue(job, { i })
  const c = process.cpuUsage(c0)
  console.log(
    "errand seq enqueue: wall",
    (((performance.now() - t) / 3000) * 1000).toFixed(0),
    "µs, cpu",
    ((c.user + c.system) / 3000).toFixed(0),
    "µs per job"
  )
  const broker = yield* Broker.Broker
  const c1 = process.cpuUsage()
  const t1 = performance.now()
  for (let i = 0; i < 3000; i++) yield* broker.send(queue, [{ id: `x${i}`, body: '{"i":1}', delay: 0, priority: 0 }])
  const d = process.cpuUsage(c1)
  console.log(
    "adapter send only: wall",
    (((performance.now() - t1) / 3000) * 1000).toFixed(0),
    "µs, cpu",
    ((d.user + d.system) / 3000).toFixed(0),
    "µs per job"
  )
  yield* broker.deleteQueue(queue)
})
await Effect.runPromise(
  program.pipe(Effect.provide(Producer.layer.pipe(Layer.provideMerge(BullMQBroker.layer({ prefix: "bench-exp" })))))
)
