/**
 * MemoryBroker end to end through core: N no-op jobs enqueued in batches, then drained by a worker
 * at concurrency 100. Prints wall-clock jobs/s, CPU time per job, and the heap held by N waiting
 * jobs. Run: `node --expose-gc --import tsx --conditions=source packages/testing/scripts/throughput.ts [N]`
 */
import { Job, Producer, Worker } from "@errand/core"
import { Deferred, Effect, Layer, Schema } from "effect"
import * as MemoryBroker from "../src/MemoryBroker.js"

const N = Number(process.argv[2] ?? 100_000)
const J = Job.make("noop", { queue: "perf", payload: Schema.Struct({ i: Schema.Number }) })
const gc = (globalThis as { gc?: () => void }).gc
const heap = () => {
  gc?.()
  gc?.()
  return process.memoryUsage().heapUsed
}

const program = Effect.gen(function* () {
  const items = Array.from({ length: N }, (_, i) => ({ payload: { i } }))
  const heapBefore = heap()
  const t0 = performance.now()
  for (let i = 0; i < N; i += 10_000) yield* Producer.enqueueBatch(J, items.slice(i, i + 10_000))
  const t1 = performance.now()
  const heapWaiting = heap()
  let done = 0
  const finished = yield* Deferred.make<void>()
  const c1 = process.cpuUsage()
  const t2 = performance.now()
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
  const t3 = performance.now()
  const cpu = process.cpuUsage(c1)
  const cpuMicros = cpu.user + cpu.system
  console.log(`jobs: ${N}, concurrency 100, payload {"i": n}, no-op handler (node ${process.version})`)
  console.log(`enqueue (batches of 10,000): ${((N / (t1 - t0)) * 1000).toFixed(0)} jobs/s`)
  console.log(
    `process end to end: ${((N / (t3 - t2)) * 1000).toFixed(0)} jobs/s wall, ${(((t3 - t2) * 1000) / N).toFixed(1)} µs/job wall`
  )
  console.log(`CPU: ${(cpuMicros / N).toFixed(1)} µs/job → ${((N / cpuMicros) * 1e6).toFixed(0)} jobs per CPU-second`)
  console.log(
    gc
      ? `heap with ${N} jobs waiting: ${((heapWaiting - heapBefore) / 1024 / 1024).toFixed(1)} MiB (${((heapWaiting - heapBefore) / N).toFixed(0)} bytes/job)`
      : "heap: run with --expose-gc to measure"
  )
})

Effect.runPromise(
  Effect.scoped(program).pipe(Effect.provide(Producer.layer.pipe(Layer.provideMerge(MemoryBroker.layer()))))
).then(() => process.exit(0))
