/**
 * The Errand side: `Producer` and `Worker` from @errand/core on whichever broker layer is given,
 * written the way the docs show (Effect programs, a no-op handler).
 */
import { Broker, Job, Producer, Worker } from "@errand/core"
import { Effect, Layer, ManagedRuntime, Schema } from "effect"
import { counter, now, pace } from "./harness.js"
import type { Side } from "./side.js"

const Payload = Schema.Struct({ i: Schema.Number })

const jobFor = (queue: string) => Job.make("noop", { queue, payload: Payload })

/** Build the Errand side on a broker layer; fails (so the adapter is skipped) when the layer does. */
export const make = async (
  brokerLayer: Layer.Layer<Broker.Broker, unknown>,
  timeout: number,
  /** Declare the queue untimed where the adapter would otherwise do it inside the first timed call. */
  prepare: (broker: Broker.BrokerShape, queue: string) => Effect.Effect<unknown, unknown> = () => Effect.void
): Promise<Side> => {
  const runtime = ManagedRuntime.make(Producer.layer.pipe(Layer.provideMerge(brokerLayer)))
  try {
    await runtime.runPromise(Effect.void)
  } catch (error) {
    await runtime.dispose().catch(() => {})
    throw error
  }
  const jobs = new Map<string, Job.Job<"noop", { readonly i: number }, { readonly i: number }>>()
  const job = (queue: string) => {
    let found = jobs.get(queue)
    if (found === undefined) {
      found = jobFor(queue)
      jobs.set(queue, found)
    }
    return found
  }
  const run = <A>(effect: Effect.Effect<A, unknown, Producer.Producer | Broker.Broker>): Promise<A> =>
    runtime.runPromise(effect)

  const timed = <E>(effect: Effect.Effect<unknown, E, Producer.Producer | Broker.Broker>): Promise<number> =>
    run(
      Effect.suspend(() => {
        const start = now()
        return Effect.map(effect, () => now() - start)
      })
    )

  const items = (from: number, to: number) => {
    const out: Array<{ readonly payload: { readonly i: number } }> = []
    for (let i = from; i < to; i++) out.push({ payload: { i } })
    return out
  }

  const indexes = (n: number) => Array.from({ length: n }, (_, i) => i)

  /** Run a worker in a scope until `until` resolves; the scope's close is its graceful shutdown. */
  const withWorker = <A>(
    queue: string,
    concurrency: number,
    onJob: (i: number) => void,
    body: Effect.Effect<A, unknown, Producer.Producer | Broker.Broker>
  ) =>
    Effect.scoped(
      Effect.gen(function* () {
        yield* Worker.run({
          queue,
          concurrency,
          handlers: [Worker.handler(job(queue), ({ i }) => Effect.sync(() => onJob(i)))]
        })
        return yield* body
      })
    )

  return {
    prepare: (queue) => run(Effect.asVoid(Broker.Broker.use((broker) => prepare(broker, queue)))),
    enqueueSequential: (queue, n) =>
      timed(Effect.forEach(indexes(n), (i) => Producer.enqueue(job(queue), { i }), { discard: true })),
    enqueueConcurrent: (queue, n) =>
      timed(
        Effect.forEach(indexes(n), (i) => Producer.enqueue(job(queue), { i }), {
          concurrency: "unbounded",
          discard: true
        })
      ),
    enqueueBulk: (queue, n) => timed(Producer.enqueueBatch(job(queue), items(0, n))),
    fill: async (queue, n) => {
      for (let from = 0; from < n; from += 1000) {
        await run(Producer.enqueueBatch(job(queue), items(from, Math.min(n, from + 1000))))
      }
    },
    work: (queue, n, concurrency) => {
      const count = counter(n, timeout, `errand worker on ${queue}`)
      return run(
        Effect.suspend(() => {
          const start = now()
          return withWorker(
            queue,
            concurrency,
            count.hit,
            Effect.map(
              Effect.tryPromise(() => count.done),
              () => now() - start
            )
          )
        })
      )
    },
    endToEnd: (queue, n, concurrency, chunk) => {
      const count = counter(n, timeout, `errand end-to-end on ${queue}`)
      return run(
        Effect.suspend(() => {
          const start = now()
          return withWorker(
            queue,
            concurrency,
            count.hit,
            Effect.gen(function* () {
              for (let from = 0; from < n; from += chunk) {
                yield* Producer.enqueueBatch(job(queue), items(from, Math.min(n, from + chunk)))
              }
              yield* Effect.tryPromise(() => count.done)
              return now() - start
            })
          )
        })
      )
    },
    latency: (queue, n, perSecond, concurrency) => {
      const sent = new Array<number>(n).fill(NaN)
      const startedAt = new Array<number>(n).fill(NaN)
      const count = counter(n, timeout, `errand latency on ${queue}`)
      const onJob = (i: number) => {
        startedAt[i] = now()
        count.hit()
      }
      return run(
        withWorker(
          queue,
          concurrency,
          onJob,
          Effect.gen(function* () {
            const producer = yield* Producer.Producer
            const definition = job(queue)
            // Each enqueue runs as its own fiber, as an HTTP handler would run it.
            yield* Effect.tryPromise(() =>
              pace(n, perSecond, (i) => {
                sent[i] = now()
                runtime.runFork(producer.enqueue(definition, { i }))
              })
            )
            yield* Effect.tryPromise(() => count.done)
            return sent.map((t, i) => startedAt[i]! - t)
          })
        )
      )
    },
    cleanup: (queue) => run(Broker.Broker.use((broker) => broker.deleteQueue(queue))),
    close: () => runtime.dispose()
  }
}
