/**
 * A worker process: `node --import tsx --conditions=source chaos/src/worker.ts` with the
 * `WorkerConfig` as JSON in `CHAOS_WORKER`. SIGTERM closes the worker's scope (graceful
 * shutdown: in-flight jobs finish within the grace period), then the process exits 0.
 */
import { Effect, Exit, Fiber } from "effect"
import { openLog, type WorkerConfig, workerProgram } from "./internal/harness.js"

const config = JSON.parse(process.env.CHAOS_WORKER ?? "") as WorkerConfig

const fiber = Effect.runFork(
  Effect.scoped(
    Effect.andThen(
      workerProgram(config, () => process.send?.({ ready: true })),
      Effect.never
    )
  )
)

let stopping = false
process.on("SIGTERM", () => {
  if (stopping) return
  stopping = true
  Effect.runPromise(Fiber.interrupt(fiber)).then(() => {
    const log = openLog(config.logFile)
    log.write({ e: "exit", pid: process.pid, t: Date.now() })
    log.close()
    process.exit(0)
  })
})

fiber.addObserver((exit) => {
  if (stopping) return
  // the program only ends by interruption: anything else is a crash the parent must see
  console.error("worker program ended", Exit.isFailure(exit) ? exit.cause : exit)
  process.exit(3)
})
