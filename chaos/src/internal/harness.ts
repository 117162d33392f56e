/**
 * The job every scenario runs and the worker program that handles it, shared by the worker
 * processes (`../worker.ts`) and the in-process MemoryBroker runs.
 *
 * The handler records each invocation (job id, pid, attempt) in an append-only log, sleeps for
 * the job's `ms`, fails if the job is poison, and otherwise applies its effect: `HINCRBY effects
 * <id> 1` on Redis. The worker runs with `idempotency: true` on a Redis store shared by every
 * process, so the effect is applied under the claim. The raw counter (not a set) lets the
 * analysis see any effect applied twice.
 */
import { type Broker, Idempotency, Job, Worker } from "@errand/core"
import { Effect, Layer, Schedule, Schema, type Scope } from "effect"
import { Redis } from "ioredis"
import { closeSync, openSync, writeSync } from "node:fs"
import type { AdapterConfig } from "./adapters.js"
import { brokerLayer } from "./adapters.js"
import { RedisIdempotencyStore } from "@errand/idempotency-redis"

export interface WorkerConfig {
  readonly adapter: AdapterConfig
  readonly queue: string
  readonly concurrency: number
  /** Lease in ms (BullMQ lock, SQS visibility). */
  readonly lease: number
  readonly gracePeriod: number
  readonly pollWait: number
  readonly attempts: number
  /** Append-only invocation log (NDJSON). */
  readonly logFile: string
  /** Redis holding the idempotency claims and the effects hash (never the broker under test). */
  readonly stateUrl: string
  /** Key prefix of this scenario run in the state Redis (a valid store prefix: no `:`). */
  readonly runKey: string
}

export const Payload = Schema.Struct({ ms: Schema.Number, poison: Schema.Boolean })

export const chaosJob = (queue: string, attempts: number) =>
  Job.make("chaos", {
    queue,
    payload: Payload,
    attempts,
    // short and flat: scenarios must end in seconds
    backoff: Schedule.spaced("200 millis")
  })

export const effectsKey = (runKey: string) => `${runKey}:effects`

/** One line of the invocation log. */
export type LogLine =
  | { readonly e: "start"; readonly id: string; readonly pid: number; readonly attempt: number; readonly t: number }
  | { readonly e: "effect"; readonly id: string; readonly pid: number; readonly t: number }
  | { readonly e: "fail"; readonly id: string; readonly pid: number; readonly attempt: number; readonly t: number }
  | { readonly e: "completed"; readonly id: string; readonly pid: number; readonly t: number }
  | { readonly e: "ready" | "exit"; readonly pid: number; readonly t: number }

export const openLog = (file: string) => {
  const fd = openSync(file, "a")
  // one write(2) per line on an O_APPEND fd: lines from several processes never interleave
  const write = (line: LogLine) => void writeSync(fd, JSON.stringify(line) + "\n")
  return { write, close: () => closeSync(fd) }
}

class PoisonError extends Schema.TaggedError<PoisonError>()("PoisonError", { message: Schema.String }) {}

/** The id of a job is the idempotency key core uses: `errand:job:<queue>:<id>`. */
const jobIdOfKey = (key: string) => key.slice(key.lastIndexOf(":") + 1)

/**
 * Run a worker until the scope closes. Resolves `onReady` once the worker loop runs.
 */
export const workerProgram = (
  config: WorkerConfig,
  onReady: () => void = () => {},
  broker: Layer.Layer<Broker.Broker, unknown> = brokerLayer(config.adapter)
): Effect.Effect<void, unknown, Scope.Scope> =>
  Effect.gen(function* () {
    const log = yield* Effect.acquireRelease(
      Effect.sync(() => openLog(config.logFile)),
      (l) => Effect.sync(() => l.close())
    )
    const redis = yield* Effect.acquireRelease(
      Effect.sync(() => {
        const r = new Redis(config.stateUrl, { maxRetriesPerRequest: 3 })
        r.on("error", () => {})
        return r
      }),
      (r) => Effect.promise(() => r.quit().catch(() => undefined))
    )
    const pid = process.pid
    // the package's store, shared by every worker process through Redis
    const base = yield* RedisIdempotencyStore.make({ url: config.stateUrl, prefix: config.runKey })
    // log who completed which claim: a kill between the effect and `complete` is the one window
    // where the guard cannot prevent a second effect
    const store: Idempotency.IdempotencyStoreShape = {
      ...base,
      complete: (key, token, ttl) =>
        base.complete(key, token, ttl).pipe(
          Effect.tap((ok) =>
            Effect.sync(() => {
              if (ok) log.write({ e: "completed", id: jobIdOfKey(key), pid, t: Date.now() })
            })
          )
        )
    }
    const job = chaosJob(config.queue, config.attempts)
    const handler = Worker.handler(job, (payload, ctx) =>
      Effect.gen(function* () {
        log.write({ e: "start", id: ctx.id, pid, attempt: ctx.attempt, t: Date.now() })
        yield* Effect.sleep(payload.ms)
        if (payload.poison) {
          log.write({ e: "fail", id: ctx.id, pid, attempt: ctx.attempt, t: Date.now() })
          return yield* new PoisonError({ message: `poison job ${ctx.id}` })
        }
        yield* Effect.promise(() => redis.hincrby(effectsKey(config.runKey), ctx.id, 1))
        log.write({ e: "effect", id: ctx.id, pid, t: Date.now() })
      })
    )
    // build the broker in the program's scope: `Effect.provide(layer)` would close it as soon as
    // `Worker.run` returns (the worker keeps running in the outer scope)
    const services = yield* Layer.build(Layer.mergeAll(broker, Layer.succeed(Idempotency.IdempotencyStore, store)))
    yield* Worker.run({
      queue: config.queue,
      handlers: [handler],
      concurrency: config.concurrency,
      lease: config.lease,
      gracePeriod: config.gracePeriod,
      pollWait: config.pollWait,
      idempotency: true
    }).pipe(Effect.provideContext(services))
    log.write({ e: "ready", pid, t: Date.now() })
    onReady()
  })
