/**
 * The "raw" side for the memory broker: the broker contract called directly (send / take / ack),
 * with no Producer or Worker. The difference to the Errand side is what core itself costs.
 */
import type { Broker } from "@errand/core"
import { Effect, Fiber } from "effect"
import { randomUUID } from "node:crypto"
import { counter, now, pace } from "../harness.js"
import type { Side } from "../side.js"

export const make = (broker: Broker.BrokerShape, timeout: number): Side => {
  const message = (i: number): Broker.OutgoingMessage => ({
    // randomUUID builds its string from pieces; round-trip it through JSON to get one flat string,
    // as the Errand side's id is once its envelope is serialized (else the heap figure counts the pieces).
    id: JSON.parse(`"${randomUUID()}"`) as string,
    body: JSON.stringify({ i }),
    delay: 0,
    priority: 0
  })
  const indexOf = (delivery: Broker.Delivery): number => (JSON.parse(delivery.body) as { i: number }).i

  const timed = (effect: Effect.Effect<unknown, unknown>): Promise<number> =>
    Effect.runPromise(
      Effect.suspend(() => {
        const start = now()
        return Effect.map(effect, () => now() - start)
      })
    )

  const indexes = (n: number) => Array.from({ length: n }, (_, i) => i)
  const messages = (from: number, to: number) => {
    const out: Array<Broker.OutgoingMessage> = []
    for (let i = from; i < to; i++) out.push(message(i))
    return out
  }

  /** A minimal consumer: take up to `concurrency`, run and ack them all, repeat, until stopped. */
  const consume = (queue: string, concurrency: number, onJob: (i: number) => void, stopped: () => boolean) =>
    Effect.gen(function* () {
      while (!stopped()) {
        const deliveries = yield* broker.take(queue, { max: concurrency, lease: 30_000, wait: 100 })
        yield* Effect.forEach(
          deliveries,
          (delivery) =>
            Effect.andThen(
              Effect.sync(() => onJob(indexOf(delivery))),
              delivery.ack
            ),
          { concurrency: "unbounded", discard: true }
        )
      }
    })

  const withConsumer = (
    queue: string,
    concurrency: number,
    onJob: (i: number) => void,
    done: Promise<void>,
    body: Effect.Effect<void, unknown>
  ) =>
    Effect.gen(function* () {
      let stop = false
      const fiber = yield* Effect.forkChild(consume(queue, concurrency, onJob, () => stop))
      yield* body
      yield* Effect.tryPromise(() => done).pipe(
        Effect.ensuring(
          Effect.suspend(() => {
            stop = true
            return Effect.ignore(Fiber.join(fiber))
          })
        )
      )
    })

  return {
    prepare: async () => {},
    enqueueSequential: (queue, n) =>
      timed(Effect.forEach(indexes(n), (i) => broker.send(queue, [message(i)]), { discard: true })),
    enqueueConcurrent: (queue, n) =>
      timed(
        Effect.forEach(indexes(n), (i) => broker.send(queue, [message(i)]), {
          concurrency: "unbounded",
          discard: true
        })
      ),
    enqueueBulk: (queue, n) => timed(broker.send(queue, messages(0, n))),
    fill: async (queue, n) => {
      for (let from = 0; from < n; from += 1000) {
        await Effect.runPromise(broker.send(queue, messages(from, Math.min(n, from + 1000))))
      }
    },
    work: (queue, n, concurrency) => {
      const count = counter(n, timeout, `direct consumer on ${queue}`)
      return timed(withConsumer(queue, concurrency, count.hit, count.done, Effect.void))
    },
    endToEnd: (queue, n, concurrency, chunk) => {
      const count = counter(n, timeout, `direct end-to-end on ${queue}`)
      return timed(
        withConsumer(
          queue,
          concurrency,
          count.hit,
          count.done,
          Effect.gen(function* () {
            for (let from = 0; from < n; from += chunk) {
              yield* broker.send(queue, messages(from, Math.min(n, from + chunk)))
            }
          })
        )
      )
    },
    latency: (queue, n, perSecond, concurrency) => {
      const sent = new Array<number>(n).fill(NaN)
      const startedAt = new Array<number>(n).fill(NaN)
      const count = counter(n, timeout, `direct latency on ${queue}`)
      const onJob = (i: number) => {
        startedAt[i] = now()
        count.hit()
      }
      return Effect.runPromise(
        withConsumer(
          queue,
          concurrency,
          onJob,
          count.done,
          Effect.tryPromise(() =>
            pace(n, perSecond, (i) => {
              sent[i] = now()
              Effect.runFork(broker.send(queue, [message(i)]))
            })
          )
        ).pipe(Effect.map(() => sent.map((t, i) => startedAt[i]! - t)))
      )
    },
    cleanup: (queue) => Effect.runPromise(broker.deleteQueue(queue)),
    close: async () => {}
  }
}
