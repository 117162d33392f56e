import { Effect, Exit, FiberSet, type Scope } from "effect"
import type { BrokerShape, OutgoingMessage, SendResult } from "../Broker.js"
import type { BrokerError } from "../Errors.js"

interface Request {
  readonly queue: string
  readonly message: OutgoingMessage
  readonly resume: (effect: Effect.Effect<SendResult, BrokerError>) => void
  /** Taken into a batch: past this point the caller can no longer withdraw it. */
  sent: boolean
}

/** Sends in flight at once; while they are busy, new enqueues pile up into the next batch. */
const maxInFlight = 8
/** Largest coalesced batch; adapters split further to their own per-call limits. */
const maxBatch = 500

/**
 * Coalesce concurrent single sends into batch sends: each caller still waits for its own
 * message to be confirmed, but under load many callers share one broker round trip.
 *
 * A lone send goes straight to the broker. Callers that arrive while sends are in flight wait in a
 * plain array (no queue, deferred or fiber per caller: this runs once per job) and leave together
 * once the callers now running have had their turn, or when a send slot frees. (Sending the first
 * callers of a burst early, before the rest had been prepared, measured within noise.)
 */
export const makeCoalescer = (
  broker: BrokerShape
): Effect.Effect<
  (queue: string, message: OutgoingMessage) => Effect.Effect<SendResult, BrokerError>,
  never,
  Scope.Scope
> =>
  Effect.gen(function* () {
    // batch sends run in the producer's scope: closing it interrupts them (their callers with them)
    const fibers = yield* FiberSet.make<void>()
    const start = yield* FiberSet.runtime(fibers)<never>()
    let waiting: Array<Request> = []
    let inFlight = 0
    let scheduled = false
    let closed = false
    yield* Effect.addFinalizer(() =>
      Effect.sync(() => {
        closed = true
        // callers still waiting when the producer's scope closes are interrupted, never left hanging
        const left = waiting
        waiting = []
        for (const request of left) request.resume(Effect.interrupt)
      })
    )

    const sendBatch = (batch: ReadonlyArray<Request>): Effect.Effect<void> => {
      const byQueue = new Map<string, Array<Request>>()
      for (const request of batch) {
        const list = byQueue.get(request.queue)
        if (list) list.push(request)
        else byQueue.set(request.queue, [request])
      }
      const send = Effect.forEach(
        byQueue,
        ([queue, list]) =>
          // each queue's send answers its own callers: one failing must not cut the others short
          Effect.map(
            Effect.exit(
              broker.send(
                queue,
                list.map((r) => r.message)
              )
            ),
            (exit) => {
              if (Exit.isSuccess(exit)) list.forEach((r, i) => r.resume(Effect.succeed(exit.value[i]!)))
              else for (const r of list) r.resume(Effect.failCause(exit.cause))
            }
          ),
        { concurrency: "unbounded", discard: true }
      )
      // interrupted (the producer is closing): callers of sends not yet answered are interrupted too
      return Effect.onInterrupt(send, () =>
        Effect.sync(() => {
          for (const r of batch) r.resume(Effect.interrupt)
        })
      )
    }

    const flush = (): void => {
      const batch = waiting.length <= maxBatch ? waiting : waiting.splice(0, maxBatch)
      if (batch === waiting) waiting = []
      for (const request of batch) request.sent = true
      inFlight++
      start(
        Effect.ensuring(
          sendBatch(batch),
          Effect.sync(() => {
            inFlight--
            drain()
          })
        )
      )
    }

    // A send that completes synchronously drains again from within `flush`: the outer loop does
    // that work instead, so the stack does not grow with the number of batches.
    let draining = false
    const drain = (): void => {
      if (draining) return
      draining = true
      try {
        while (!closed && waiting.length > 0 && inFlight < maxInFlight) flush()
      } finally {
        draining = false
      }
    }

    // runs after the fibers already scheduled (the rest of a burst of callers) have had their turn
    const later = Effect.andThen(
      Effect.yieldNow,
      Effect.sync(() => {
        scheduled = false
        drain()
      })
    )

    const enqueue = (queue: string, message: OutgoingMessage) =>
      Effect.callback<SendResult, BrokerError>((resume) => {
        // the producer closed between this effect's making and its run: nothing sends any more
        if (closed) return resume(Effect.interrupt)
        const request: Request = { queue, message, resume, sent: false }
        waiting.push(request)
        if (!scheduled) {
          scheduled = true
          start(later)
        }
        // withdrawn if interrupted before its batch left; once sent, the broker has it either way
        return Effect.sync(() => {
          if (!request.sent) {
            const at = waiting.indexOf(request)
            if (at >= 0) waiting.splice(at, 1)
          }
        })
      })

    // A lone send goes straight to the broker: coalescing only pays when sends overlap, and the
    // hop through the batcher would add latency to every sequential enqueue.
    let direct = 0
    return (queue, message) => {
      // the producer's scope is closed: nothing sends any more
      if (closed) return Effect.interrupt
      if (direct === 0 && inFlight === 0 && waiting.length === 0) {
        direct++
        return Effect.map(broker.send(queue, [message]), (results) => results[0]!).pipe(
          Effect.ensuring(Effect.sync(() => direct--))
        )
      }
      return enqueue(queue, message)
    }
  })
