/**
 * Helpers shared by the conformance cases: queue names, condition polling, suite-default
 * workers, recorders of handler runs, and a send-counting broker wrapper.
 */
import { Broker, type Errors, type Idempotency, type Job, type Producer, Queues, Worker } from "@errand/core"
import { Cause, Clock, Effect, type Layer, type Scope } from "effect"
import { randomBytes } from "node:crypto"

/** The options a configuration gives (`Conformance.Options`). */
export interface SuiteOptions {
  /** The broker under test; built fresh for each case. */
  readonly layer: Layer.Layer<Broker.Broker, unknown>
  /**
   * Declared capabilities (what the adapter's README promises). They gate cases at registration
   * time; case 19 checks that the layer's `broker.capabilities` equals them and that the broker
   * behaves accordingly.
   */
  readonly capabilities: Broker.Capabilities
  /**
   * For case 20: a broker layer on an instance that `restart` restarts (stop + start, returning
   * once it is back). Absent → case 20 is skipped with `restartSkipReason`.
   */
  readonly restart?:
    | {
        readonly layer: Layer.Layer<Broker.Broker, unknown>
        readonly restart: Effect.Effect<void, unknown>
      }
    | undefined
  /** Store for the idempotency and scheduler cases (default: core's `Idempotency.layerMemory`). */
  readonly idempotencyStore?: Layer.Layer<Idempotency.IdempotencyStore, unknown> | undefined
  /** Multiply waits and timeouts for slow brokers (default 1). */
  readonly timeScale?: number | undefined
  /** Why case 20 is skipped when `restart` is absent (e.g. "the in-memory broker keeps nothing across restarts"). */
  readonly restartSkipReason?: string | undefined
}

/** What every case runs with. */
export type CaseEnv = Broker.Broker | Producer.Producer | Idempotency.IdempotencyStore | Scope.Scope

/** What a case knows about the configuration it runs against. */
export interface Kit {
  /** Two-digit case number, used in queue names. */
  readonly caseId: string
  readonly options: SuiteOptions
  readonly capabilities: Broker.Capabilities
  readonly timeScale: number
  /** Scale a wait or timeout (ms) for slow brokers. */
  readonly scaled: (ms: number) => number
}

/** One conformance case. */
export interface Case {
  readonly id: string
  readonly title: string
  /** The reason to skip this case for these options, or undefined to run it. */
  readonly skip?: ((options: SuiteOptions) => string | undefined) | undefined
  /** Test timeout in ms before scaling (default 60 s). */
  readonly timeout?: number | undefined
  /** The broker layer to use instead of `options.layer`. */
  readonly layer?: ((options: SuiteOptions) => Layer.Layer<Broker.Broker, unknown>) | undefined
  /** Provide `options.idempotencyStore` (else core's memory store is in context). */
  readonly userStore?: boolean | undefined
  readonly run: (kit: Kit) => Effect.Effect<void, unknown, CaseEnv>
}

/** Tolerance for "not before" checks against real clocks and brokers, in ms. */
export const tolerance = 50

/** Current time in epoch ms, from Effect's clock (live in the suite). */
export const now: Effect.Effect<number> = Clock.currentTimeMillis

/** A short random suffix. */
export const randomSuffix = (): string => randomBytes(5).toString("hex")

/**
 * A fresh queue name for this case, valid for the broker (with `.fifo` appended where the broker
 * requires it); the queue is deleted when the case's scope closes.
 */
export const newQueue = (kit: Kit, label = "q"): Effect.Effect<string, never, Broker.Broker | Scope.Scope> =>
  Effect.gen(function* () {
    const broker = yield* Broker.Broker
    let name = `conf-${kit.caseId}-${label}-${randomSuffix()}`
    if (broker.validateQueueName(name) !== undefined) name = `${name}.fifo`
    const reason = broker.validateQueueName(name)
    if (reason !== undefined) {
      return yield* Effect.die(new Error(`conformance: broker "${broker.name}" refuses queue name ${name}: ${reason}`))
    }
    yield* Effect.addFinalizer(() =>
      Queues.destroy(name).pipe(
        Effect.timeout(kit.scaled(30_000)),
        Effect.catchCause((cause) => Effect.logWarning(`conformance: could not delete queue ${name}`, cause))
      )
    )
    return name
  })

/** Failure raised when a polled condition does not hold in time. */
export class ConditionTimeout extends Error {
  override readonly name = "ConditionTimeout"
}

/**
 * Poll `check` (a predicate or an effect) until it holds; fail with a readable error after
 * `timeout` ms (scaled). `detail` describes the state on failure.
 */
export const waitFor = <E = never, R = never>(
  kit: Kit,
  what: string,
  check: (() => boolean) | Effect.Effect<boolean, E, R>,
  timeout: number,
  detail?: () => string
): Effect.Effect<void, E, R> =>
  Effect.gen(function* () {
    const deadline = (yield* now) + kit.scaled(timeout)
    const isEffect = typeof check !== "function"
    const interval = isEffect ? 100 : 20
    while (true) {
      const ok = isEffect ? yield* check : check()
      if (ok) return
      if ((yield* now) > deadline) {
        return yield* Effect.die(
          new ConditionTimeout(
            `conformance: timed out after ${kit.scaled(timeout)} ms waiting for ${what}${detail ? ` (${detail()})` : ""}`
          )
        )
      }
      yield* Effect.sleep(interval)
    }
  })

/**
 * Wait `ms` (scaled) so that something that must NOT happen has had the chance to happen. Only
 * ever used before asserting an absence (no duplicate, no further run), never a presence.
 */
export const quietPeriod = (kit: Kit, ms: number): Effect.Effect<void> => Effect.sleep(kit.scaled(ms))

/** Poll the queue's stats until they equal `expected`. */
export const waitForStats = (
  kit: Kit,
  queue: string,
  expected: Broker.QueueStats,
  timeout = 15_000
): Effect.Effect<void, unknown, Broker.Broker> => {
  let last: Broker.QueueStats | undefined
  return waitFor(
    kit,
    `stats of ${queue} to be ${JSON.stringify(expected)}`,
    Effect.map(Queues.stats(queue), (stats) => {
      last = stats
      return (
        stats.waiting === expected.waiting &&
        stats.active === expected.active &&
        stats.delayed === expected.delayed &&
        stats.dead === expected.dead
      )
    }),
    timeout,
    () => `last seen ${JSON.stringify(last)}`
  )
}

/** Poll until the queue holds nothing waiting, active or delayed. */
export const waitForDrained = (
  kit: Kit,
  queue: string,
  timeout = 15_000
): Effect.Effect<void, unknown, Broker.Broker> => {
  let last: Broker.QueueStats | undefined
  return waitFor(
    kit,
    `queue ${queue} to drain`,
    Effect.map(Queues.stats(queue), (stats) => {
      last = stats
      return stats.waiting === 0 && stats.active === 0 && stats.delayed === 0
    }),
    timeout,
    () => `last seen ${JSON.stringify(last)}`
  )
}

/**
 * Start a worker with the suite's defaults: a short poll wait (fast shutdown) and a short grace
 * period (cases that block handlers do not hold their teardown for 10 s).
 */
export const startWorker = <R>(
  queue: string,
  handlers: ReadonlyArray<Worker.Handler<R>>,
  overrides?: Partial<Omit<Worker.Options<R>, "queue" | "handlers">>
): Effect.Effect<Worker.Worker, Errors.InvalidOption | Errors.InvalidQueueName, Broker.Broker | Scope.Scope | R> =>
  Worker.run<R>({
    queue,
    handlers,
    pollWait: 200,
    gracePeriod: 1000,
    ...overrides
  })

/** One recorded handler run. */
export interface Run<P> {
  readonly payload: P
  readonly context: Worker.JobContext
  readonly startedAt: number
  endedAt: number | undefined
  outcome: "running" | "succeeded" | "failed" | "interrupted"
}

/** Records every handler run, for assertions after the fact. */
export class Recorder<P> {
  readonly runs: Array<Run<P>> = []
  inFlight = 0
  maxInFlight = 0

  /** Wrap a handler body: records start, end, outcome and in-flight counts. */
  handle<A, E, R>(
    body: (payload: P, context: Worker.JobContext, run: Run<P>) => Effect.Effect<A, E, R>
  ): (payload: P, context: Worker.JobContext) => Effect.Effect<A, E, R> {
    return (payload, context) =>
      Effect.suspend(() => {
        const run: Run<P> = { payload, context, startedAt: Date.now(), endedAt: undefined, outcome: "running" }
        this.runs.push(run)
        this.inFlight++
        if (this.inFlight > this.maxInFlight) this.maxInFlight = this.inFlight
        return body(payload, context, run).pipe(
          Effect.onExit((exit) =>
            Effect.sync(() => {
              this.inFlight--
              run.endedAt = Date.now()
              run.outcome =
                exit._tag === "Success" ? "succeeded" : Cause.hasInterruptsOnly(exit.cause) ? "interrupted" : "failed"
            })
          )
        )
      })
  }

  get count(): number {
    return this.runs.length
  }

  of(id: string): Array<Run<P>> {
    return this.runs.filter((r) => r.context.id === id)
  }

  succeeded(): Array<Run<P>> {
    return this.runs.filter((r) => r.outcome === "succeeded")
  }

  /** Run counts per job id. */
  countsById(): Map<string, number> {
    const counts = new Map<string, number>()
    for (const r of this.runs) counts.set(r.context.id, (counts.get(r.context.id) ?? 0) + 1)
    return counts
  }

  summary(): string {
    return `${this.runs.length} run(s): ${this.runs
      .slice(0, 20)
      .map((r) => `${r.context.id}#${r.context.attempt}:${r.outcome}`)
      .join(", ")}${this.runs.length > 20 ? ", …" : ""}`
  }
}

/** A failure the suite's handlers raise on purpose. */
export class IntendedFailure extends Error {
  readonly _tag = "IntendedFailure"
  override readonly name = "IntendedFailure"
}

/** A broker that counts `send` calls, for "nothing was sent" checks. */
export const countingBroker = (
  broker: Broker.BrokerShape
): { readonly broker: Broker.BrokerShape; readonly sends: () => number } => {
  let sends = 0
  return {
    broker: Broker.Broker.of({
      ...broker,
      send: (queue, messages) =>
        Effect.suspend(() => {
          sends++
          return broker.send(queue, messages)
        })
    }),
    sends: () => sends
  }
}

/** `n` integers from `from`. */
export const range = (from: number, to: number): Array<number> =>
  Array.from({ length: Math.max(0, to - from) }, (_, i) => from + i)

/** Re-export for cases. */
export type AnyJob = Job.Any
