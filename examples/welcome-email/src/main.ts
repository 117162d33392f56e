/**
 * The welcome-email service as a process: HTTP API, worker and daily-digest schedule.
 *
 * `pnpm start`. Environment: `ERRAND_BROKER`, `REDIS_URL`, `AMQP_URL`, `SQS_ENDPOINT`, `PORT`,
 * `HOST`, `MAILER_FAILURE_RATE`, `MAILER_SEED`, `MAILER_LATENCY_MS` (see the README).
 *
 * SIGTERM or SIGINT interrupts the main fiber: its scope closes, so the server stops taking
 * requests, the schedule stops, and the worker finishes the jobs in flight (within its grace
 * period) before the process exits with code 0.
 *
 * @since 0.0.0
 */
import { Cause, Config, Effect, Exit, Layer } from "effect"
import * as App from "./app.js"
import * as BrokerLayer from "./broker.js"

/** The fake mailer's behaviour in the server: slow-ish, failing now and then, `bounce` always. */
const mailer = Config.all({
  failureRate: Config.Number("MAILER_FAILURE_RATE").pipe(Config.withDefault(0.2)),
  seed: Config.Int("MAILER_SEED").pipe(Config.withDefault(42)),
  latency: Config.Int("MAILER_LATENCY_MS").pipe(Config.withDefault(200))
})

const AppLive = Layer.unwrap(
  Effect.gen(function* () {
    const options = yield* mailer
    return App.layer({ broker: BrokerLayer.layer, mailer: { ...options, alwaysFail: ["bounce"], log: true } })
  })
)

const program = Effect.gen(function* () {
  // PORT=0 picks a free port (Config.Port would refuse it)
  const port = yield* Config.Int("PORT").pipe(Config.withDefault(3000))
  if (port < 0 || port > 65535) return yield* Effect.fail(new Error(`PORT must be 0..65535, got ${port}`))
  const host = yield* Config.String("HOST").pipe(Config.withDefault("127.0.0.1"))
  const server = yield* App.start({ port, host })
  yield* Effect.logInfo(`listening on ${server.url}`)
  return yield* Effect.never
}).pipe(Effect.scoped, Effect.provide(AppLive))

const main = Effect.runFork(program)
// Node exits when its event loop is empty, even while fibers still wait on each other during
// shutdown; this keeps the process alive until the main fiber is done.
const keepAlive = setInterval(() => {}, 2 ** 31 - 1)
let stopping = false
const stop = (signal: NodeJS.Signals) => {
  if (stopping) return
  stopping = true
  console.log(`${signal}: shutting down (finishing in-flight jobs)`)
  main.interruptUnsafe()
}
process.once("SIGTERM", stop)
process.once("SIGINT", stop)
main.addObserver((exit) => {
  clearInterval(keepAlive)
  if (Exit.isSuccess(exit) || (stopping && Cause.hasInterruptsOnly(exit.cause))) {
    console.log("stopped cleanly")
    process.exit(0)
  }
  // an expected failure (bad configuration, adapter missing) gets one line; a defect its full trace
  const error = Cause.findErrorOption(exit.cause)
  const expected =
    error._tag === "Some" && !Cause.hasDies(exit.cause)
      ? (error.value as { _tag?: unknown; message?: unknown })
      : undefined
  console.error(
    expected !== undefined && typeof expected.message === "string"
      ? `${typeof expected._tag === "string" ? expected._tag : "Error"}: ${expected.message.replace(/\s*\n\s*/g, " ")}`
      : Cause.pretty(exit.cause)
  )
  process.exit(1)
})
