import { Job, Producer, Worker } from "@errand/core"
import * as MemoryBroker from "../src/MemoryBroker.js"
import { Deferred, Effect, Layer, Schema } from "effect"

const N = Number(process.argv[2] ?? 100_000)
const J = Job.make("noop", { queue: "perf", payload: Schema.Struct({ i: Schema.Number }) })
const program = Effect.gen(function* () {
  const items = Array.from({ length: N }, (_, i) => ({ payload: { i } }))
  const t0 = performance.now()
  for (let i = 0; i < N; i += 10_000) yield* Producer.enqueueBatch(J, items.slice(i, i + 10_000))
  const t1 = performance.now()
  let done = 0
  const finished = yield* Deferred.make<void>()
  yield* Worker.run({
    queue: "perf",
    concurrency: 100,
    handlers: [
      Worker.handler(J, () =>
        Effect.sync(() => {
          if (++done === N) Deferred.doneUnsafe(finished, Effect.void)
        })
      )
    ]
  })
  yield* Deferred.await(finished)
  const t2 = performance.now()
  console.log(
    `enqueue ${N} in ${(t1 - t0).toFixed(0)} ms; process ${(N / ((t2 - t1) / 1000)).toFixed(0)} jobs/s; ${(((t2 - t1) * 1000) / N).toFixed(1)} µs/job`
  )
})
Effect.runPromise(
  Effect.scoped(program).pipe(Effect.provide(Producer.layer.pipe(Layer.provideMerge(MemoryBroker.layer()))))
).then(() => process.exit(0))
