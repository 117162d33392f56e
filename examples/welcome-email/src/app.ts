/**
 * The service put together: broker, idempotency store, producer and mailer as one layer, and
 * `start`, which runs the worker, the digest schedule and the HTTP server in the current scope.
 * `main.ts` runs it as a process; `demo.ts` and the tests run it in process.
 *
 * @since 0.0.0
 */
import { type Broker, type Errors, Idempotency, Producer } from "@errand/core"
import { Effect, Layer, type Scope } from "effect"
import * as Http from "./http.js"
import { Mailer, type Options as MailerOptions } from "./mailer.js"
import * as Worker from "./worker.js"

/**
 * The services the app needs, on a given broker layer. The idempotency store is the in-memory
 * one: right for the memory broker and for a single process; several processes on a real broker
 * need a shared store (such as `@errand/idempotency-redis`).
 *
 * @since 0.0.0
 */
export const layer = <E>(options: {
  readonly broker: Layer.Layer<Broker.Broker, E>
  readonly mailer?: MailerOptions | undefined
}) =>
  Layer.mergeAll(Producer.layer, Mailer.layer(options.mailer)).pipe(
    Layer.provideMerge(Layer.mergeAll(options.broker, Idempotency.layerMemory))
  )

/**
 * Start the worker, the daily-digest schedule and the HTTP server in the current scope. When the
 * scope closes, they stop in reverse order: the server stops taking requests first, then the
 * schedule, then the worker finishes its in-flight jobs.
 *
 * @since 0.0.0
 */
export const start = (options: {
  readonly port: number
  readonly host?: string | undefined
}): Effect.Effect<
  Http.Server,
  Errors.InvalidOption | Errors.InvalidQueueName | Error,
  Broker.Broker | Producer.Producer | Mailer | Scope.Scope
> =>
  Effect.gen(function* () {
    yield* Worker.start()
    yield* Worker.scheduleDigest
    return yield* Http.serve(options)
  })
