import { Deferred, Effect, Queue, Semaphore, type Scope } from "effect"
import type { BrokerShape, OutgoingMessage, SendResult } from "../Broker.js"
import type { BrokerError } from "../Errors.js"

interface Request {
  readonly queue: string
  readonly message: OutgoingMessage
  readonly deferred: Deferred.Deferred<SendResult, BrokerError>
}

/** Sends in flight at once; while they are busy, new enqueues pile up into the next batch. */
const maxInFlight = 8
/** Largest coalesced batch; adapters split further to their own per-call limits. */
const maxBatch = 500

/**
 * Coalesce concurrent single sends into batch sends: each caller still waits for its own
 * message to be confirmed, but under load many callers share one broker round trip.
 */
export const makeCoalescer = (
  broker: BrokerShape
): Effect.Effect<
  (queue: string, message: OutgoingMessage) => Effect.Effect<SendResult, BrokerError>,
  never,
  Scope.Scope
> =>
  Effect.gen(function* () {
    const requests = yield* Queue.unbounded<Request>()
    const permits = yield* Semaphore.make(maxInFlight)
    // callers still waiting when the producer's scope closes are interrupted, never left hanging
    const outstanding = new Set<Deferred.Deferred<SendResult, BrokerError>>()
    let closed = false
    yield* Effect.addFinalizer(() =>
      Effect.sync(() => {
        closed = true
        for (const deferred of outstanding) Deferred.doneUnsafe(deferred, Effect.interrupt)
        outstanding.clear()
      })
    )

    const flush = (batch: ReadonlyArray<Request>) => {
      const byQueue = new Map<string, Array<Request>>()
      for (const request of batch) {
        const list = byQueue.get(request.queue)
        if (list) list.push(request)
        else byQueue.set(request.queue, [request])
      }
      return Effect.forEach(
        byQueue,
        ([queue, list]) =>
          broker
            .send(
              queue,
              list.map((r) => r.message)
            )
            .pipe(
              Effect.matchCauseEffect({
                onSuccess: (results) =>
                  Effect.sync(() => {
                    list.forEach((r, i) => Deferred.doneUnsafe(r.deferred, Effect.succeed(results[i]!)))
                  }),
                onFailure: (cause) =>
                  Effect.sync(() => {
                    for (const r of list) Deferred.doneUnsafe(r.deferred, Effect.failCause(cause))
                  })
              })
            ),
        { concurrency: "unbounded", discard: true }
      )
    }

    yield* Effect.forkScoped(
      Effect.forever(
        Effect.gen(function* () {
          yield* permits.take(1)
          const batch = yield* Queue.takeBetween(requests, 1, maxBatch)
          yield* Effect.forkScoped(Effect.ensuring(flush(batch), permits.release(1)))
        })
      )
    )

    // A lone enqueue goes straight to the broker: coalescing only pays when sends overlap, and
    // the queue hop would add latency to every sequential enqueue.
    let direct = 0
    let pending = 0
    return (queue, message) => {
      // the producer's scope is closed: nothing drains the queue any more
      if (closed) return Effect.interrupt
      if (direct === 0 && pending === 0) {
        direct++
        return Effect.map(broker.send(queue, [message]), (results) => results[0]!).pipe(
          Effect.ensuring(Effect.sync(() => direct--))
        )
      }
      return Effect.flatMap(Deferred.make<SendResult, BrokerError>(), (deferred) => {
        outstanding.add(deferred)
        pending++
        return Effect.andThen(Queue.offer(requests, { queue, message, deferred }), Deferred.await(deferred)).pipe(
          Effect.ensuring(
            Effect.sync(() => {
              pending--
              outstanding.delete(deferred)
            })
          )
        )
      })
    }
  })
