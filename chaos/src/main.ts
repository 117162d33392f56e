/**
 * `pnpm test:chaos` (multi-process part): for each adapter, run the fault scenarios with real
 * worker processes, print one table, exit non-zero on any violation.
 *
 * Usage: node --import tsx --conditions=source chaos/src/main.ts
 *          [--adapter bullmq,rabbitmq,sqs,memory] [--scenario kill,restart,sigterm,pause,poison] [--scale 0.2]
 *
 * Environment: CHAOS_STATE_REDIS (default redis://127.0.0.1:6379) holds idempotency claims and
 * effects; AMQP_URL (default amqp://guest:guest@127.0.0.1:5672).
 */
import { Broker, DeadLetters, Producer } from "@errand/core"
import { MemoryBroker } from "@errand/testing"
import { Effect, Exit, Fiber, Layer, ManagedRuntime } from "effect"
import { Redis } from "ioredis"
import { randomUUID } from "node:crypto"
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { type AdapterConfig, type AdapterKind, brokerLayer } from "./internal/adapters.js"
import { analyse, checkGoodJobs, emptyRow, finish, type Kill, readLog, type Row, table } from "./internal/analysis.js"
import { chaosJob, effectsKey, type WorkerConfig, workerProgram } from "./internal/harness.js"
import {
  type FauxqsServer,
  rabbitmq,
  type RedisServer,
  sleep,
  spawnWorker,
  startFauxqs,
  startRedis,
  waitFor,
  type WorkerProcess
} from "./internal/processes.js"

// ---------------------------------------------------------------------------------------------
// options

const argValue = (name: string): string | undefined => {
  const i = process.argv.indexOf(`--${name}`)
  return i >= 0 ? process.argv[i + 1] : undefined
}
const allAdapters: ReadonlyArray<AdapterKind> = ["memory", "bullmq", "rabbitmq", "sqs"]
const allScenarios = ["kill", "restart", "sigterm", "pause", "poison"] as const
type ScenarioName = (typeof allScenarios)[number]
const adapters = (argValue("adapter")?.split(",") ?? allAdapters) as ReadonlyArray<AdapterKind>
const scenarios = (argValue("scenario")?.split(",") ?? allScenarios) as ReadonlyArray<ScenarioName>
const scale = Number(argValue("scale") ?? process.env.CHAOS_SCALE ?? "1")
const stateUrl = process.env.CHAOS_STATE_REDIS ?? "redis://127.0.0.1:6379"
const amqpUrl = process.env.AMQP_URL ?? "amqp://guest:guest@127.0.0.1:5672"
const runId = randomUUID().slice(0, 8)
const workDir = mkdtempSync(join(tmpdir(), `errand-chaos-${runId}-`))
const keepLogs = process.env.CHAOS_KEEP_LOGS === "1"

const scenarioTitle: Record<ScenarioName, string> = {
  kill: "1 SIGKILL workers",
  restart: "2 broker restart",
  sigterm: "3 SIGTERM drain",
  pause: "4 SIGSTOP broker 10 s",
  poison: "5 poison → DLQ"
}

const say = (text: string) => process.stderr.write(`[chaos ${new Date().toISOString().slice(11, 19)}] ${text}\n`)

// ---------------------------------------------------------------------------------------------
// environments: one per adapter, with the broker's fault controls

interface Env {
  readonly kind: AdapterKind
  readonly adapter: AdapterConfig
  /** In-process only: the one broker instance producer and worker share. */
  readonly shared?: Layer.Layer<Broker.Broker> | undefined
  readonly restart: (() => Promise<string | undefined>) | string
  /** `stop` answers the process state it saw afterwards ("T (stopped)"), as evidence. */
  readonly pause: { readonly stop: () => Promise<string>; readonly cont: () => Promise<void> } | string
  readonly stop: () => Promise<void>
}

const pendingSigcont = new Set<number>()
const contAll = () => {
  for (const pid of pendingSigcont) {
    try {
      process.kill(pid, "SIGCONT")
    } catch {
      // gone
    }
  }
}
// never leave a broker stopped, whatever happens to this process
process.on("exit", contAll)
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.on(signal, () => {
    contAll()
    process.exit(130)
  })
}

const signalPid = async (pid: number, signal: NodeJS.Signals): Promise<string> => {
  if (signal === "SIGSTOP") pendingSigcont.add(pid)
  process.kill(pid, signal)
  if (signal === "SIGCONT") pendingSigcont.delete(pid)
  await sleep(200)
  try {
    // field 3 of /proc/<pid>/stat: T when stopped
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8")
    return `pid ${pid} state ${stat.slice(stat.lastIndexOf(")") + 2).split(" ")[0]}`
  } catch {
    return `pid ${pid}`
  }
}

/** Wait up to 60 s for RabbitMQ to have no connection but ours; answers how many others remain. */
const quietRabbitMQ = async () => {
  let others = await rabbitmq.otherConnections()
  const deadline = Date.now() + 60_000
  while (others > 0 && Date.now() < deadline) {
    await sleep(2000)
    others = await rabbitmq.otherConnections()
  }
  return others
}

const makeEnv = async (kind: AdapterKind): Promise<Env> => {
  switch (kind) {
    case "memory": {
      const broker = Effect.runSync(MemoryBroker.make())
      return {
        kind,
        adapter: { kind: "memory" },
        shared: Layer.succeed(Broker.Broker, broker),
        restart: "in-process broker: no process to restart (MemoryBroker is not persistent)",
        pause: "in-process broker: no process to stop",
        stop: async () => {}
      }
    }
    case "bullmq": {
      const redis: RedisServer = await startRedis()
      return {
        kind,
        adapter: { kind: "bullmq", url: redis.url, prefix: `chaos${runId}` },
        restart: async () => {
          await redis.restart()
          return `redis-server SIGKILLed and restarted (appendonly yes, fsync always) on :${redis.port}`
        },
        pause: {
          stop: async () => signalPid(redis.pid()!, "SIGSTOP"),
          cont: async () => void (await signalPid(redis.pid()!, "SIGCONT"))
        },
        stop: redis.stop
      }
    }
    case "rabbitmq": {
      return {
        kind,
        adapter: { kind: "rabbitmq", url: amqpUrl },
        restart: async () => {
          const others = await rabbitmq.otherConnections()
          if (others > 0) return `SKIPPED: ${others} other connection(s) on RabbitMQ; stop_app would break them`
          const stopped = await rabbitmq.stopApp()
          if (!stopped.ok) throw new Error(`rabbitmqctl stop_app failed: ${stopped.stderr}`)
          await sleep(2000)
          const started = await rabbitmq.startApp()
          if (!started.ok) throw new Error(`rabbitmqctl start_app failed: ${started.stderr}`)
          return "rabbitmqctl stop_app, 2 s, start_app"
        },
        pause: {
          stop: async () => {
            const pid = await rabbitmq.beamPid()
            if (pid === undefined) throw new Error("no beam pid from rabbitmqctl eval")
            return signalPid(pid, "SIGSTOP")
          },
          cont: async () => contAll()
        },
        stop: async () => {}
      }
    }
    case "sqs": {
      const fauxqs: FauxqsServer = await startFauxqs(join(workDir, "fauxqs.out"))
      const pid = fauxqs.child.pid!
      return {
        kind,
        adapter: { kind: "sqs", endpoint: fauxqs.endpoint, accessKeyId: "chaos", secretAccessKey: "chaos" },
        restart: "the fauxqs emulator keeps queues in memory only: a restart loses everything by design",
        pause: {
          stop: async () => signalPid(pid, "SIGSTOP"),
          cont: async () => void (await signalPid(pid, "SIGCONT"))
        },
        stop: fauxqs.stop
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// the parts of a scenario

interface Run {
  readonly env: Env
  readonly queue: string
  readonly runKey: string
  readonly logFile: string
  readonly dir: string
  readonly state: Redis
  readonly base: WorkerConfig
  readonly runtime: ManagedRuntime.ManagedRuntime<Broker.Broker | Producer.Producer, unknown>
  readonly accepted: Set<string>
  readonly pending: Set<Promise<void>>
  rejected: number
  lastRejection: string | undefined
}

const newRun = async (env: Env, scenario: ScenarioName, options: Partial<WorkerConfig> = {}): Promise<Run> => {
  const tag = `${scenario}-${randomUUID().slice(0, 6)}`
  const queue = `chaos-${tag}`
  const dir = join(workDir, `${env.kind}-${tag}`)
  mkdirSync(dir, { recursive: true })
  const runKey = `errand-chaos-${runId}-${env.kind}-${tag}`
  const state = new Redis(stateUrl, { maxRetriesPerRequest: 3 })
  state.on("error", () => {})
  const base: WorkerConfig = {
    adapter: env.adapter,
    queue,
    concurrency: 8,
    lease: 5000,
    gracePeriod: 5000,
    pollWait: 500,
    attempts: 3,
    logFile: join(dir, "invocations.ndjson"),
    stateUrl,
    runKey,
    ...options
  }
  const runtime = ManagedRuntime.make(
    Producer.layer.pipe(
      Layer.provideMerge(env.shared ?? (brokerLayer(env.adapter) as Layer.Layer<Broker.Broker, unknown>))
    )
  )
  return {
    env,
    queue,
    runKey,
    logFile: base.logFile,
    dir,
    state,
    base,
    runtime,
    accepted: new Set(),
    pending: new Set(),
    rejected: 0,
    lastRejection: undefined
  }
}

const closeRun = async (run: Run) => {
  await Promise.race([
    run.runtime.runPromise(
      Effect.gen(function* () {
        const broker = yield* Broker.Broker
        yield* Effect.ignore(broker.deleteQueue(run.queue))
      })
    ),
    sleep(15_000)
  ]).catch(() => undefined)
  await run.runtime.dispose().catch(() => undefined)
  // drop this run's keys from the shared state Redis
  let cursor = "0"
  do {
    const [next, keys] = await run.state.scan(cursor, "MATCH", `${run.runKey}:*`, "COUNT", 1000)
    cursor = next
    if (keys.length > 0) await run.state.unlink(...keys)
  } while (cursor !== "0")
  await run.state.quit().catch(() => undefined)
}

/** Enqueue one job; it counts as accepted only once `enqueue` returned. */
const enqueue = (run: Run, id: string, payload: { ms: number; poison: boolean }, attempts: number) => {
  const job = chaosJob(run.queue, attempts)
  const p = run.runtime.runPromiseExit(Producer.enqueue(job, payload, { id })).then((exit) => {
    if (Exit.isSuccess(exit)) run.accepted.add(id)
    else {
      run.rejected++
      run.lastRejection = String(exit.cause).slice(0, 200)
    }
  })
  run.pending.add(p)
  void p.finally(() => run.pending.delete(p))
}

/** Enqueue `ids` spread evenly over `duration` ms (never waiting on a slow broker). */
const produce = async (
  run: Run,
  ids: ReadonlyArray<string>,
  duration: number,
  payload: (id: string) => { ms: number; poison: boolean },
  attempts: number
) => {
  const start = Date.now()
  const ticks = Math.max(1, Math.floor(duration / 100))
  const per = Math.max(1, Math.ceil(ids.length / ticks))
  for (let i = 0, tick = 1; i < ids.length; i += per, tick++) {
    for (const id of ids.slice(i, i + per)) enqueue(run, id, payload(id), attempts)
    const wait = start + tick * 100 - Date.now()
    if (wait > 0) await sleep(wait)
    // a stopped broker: do not pile up more than a few thousand outstanding sends
    while (run.pending.size > 3000) await sleep(100)
  }
}

const settleProducer = async (run: Run, timeout = 60_000) => {
  await Promise.race([Promise.allSettled([...run.pending]), sleep(timeout)])
}

const effects = async (run: Run): Promise<Record<string, string>> => run.state.hgetall(effectsKey(run.runKey))

/** Wait until every accepted good job has its effect; the drain time, or undefined on timeout. */
const waitDrained = async (run: Run, good: (id: string) => boolean, from: number, timeout: number) => {
  const done = await waitFor(
    async () => {
      const n = await run.state.hlen(effectsKey(run.runKey))
      const wanted = [...run.accepted].filter(good)
      if (n < wanted.length) return false
      const all = await effects(run)
      return wanted.every((id) => all[id] !== undefined)
    },
    timeout,
    500
  )
  return done ? Date.now() - from : undefined
}

const ms = (min: number, max: number) => min + Math.floor(Math.random() * (max - min + 1))

// worker processes -----------------------------------------------------------------------------

class Fleet {
  readonly workers: Array<WorkerProcess> = []
  readonly kills: Array<Kill> = []
  readonly crashes: Array<string> = []
  private index = 0
  constructor(
    readonly run: Run,
    readonly config: WorkerConfig = run.base
  ) {}

  /** In-process worker (MemoryBroker): a fiber, not a process. */
  private local: Fiber.Fiber<unknown, unknown> | undefined

  async spawn(): Promise<WorkerProcess | undefined> {
    if (this.run.env.shared) {
      let ready!: () => void
      const isReady = new Promise<void>((r) => (ready = r))
      this.local = Effect.runFork(
        Effect.scoped(Effect.andThen(workerProgram(this.config, ready, this.run.env.shared), Effect.never))
      )
      await isReady
      return undefined
    }
    const w = spawnWorker(this.config, join(this.run.dir, `worker-${this.index++}.out`))
    this.workers.push(w)
    void w.exited.then(({ code, signal }) => {
      if (!w.expectedExit) this.crashes.push(`worker ${w.pid} exited unexpectedly (code ${code}, signal ${signal})`)
    })
    await Promise.race([w.ready, sleep(60_000).then(() => Promise.reject(new Error("worker not ready in 60 s")))])
    return w
  }

  live() {
    return this.workers.filter((w) => w.child.exitCode === null && w.child.signalCode === null)
  }

  /** SIGKILL a random worker that is ready; false when none is. */
  async killRandom(): Promise<boolean> {
    const live = this.live().filter((w) => w.isReady)
    const victim = live[Math.floor(Math.random() * live.length)]
    if (!victim) return false
    victim.expectedExit = true
    this.kills.push({ pid: victim.pid, t: Date.now() })
    victim.child.kill("SIGKILL")
    await victim.exited
    return true
  }

  /** SIGTERM; resolves with the time to exit. */
  async terminate(w: WorkerProcess): Promise<number> {
    w.expectedExit = true
    const t0 = Date.now()
    w.child.kill("SIGTERM")
    const exited = await Promise.race([w.exited, sleep(30_000).then(() => undefined)])
    if (!exited) {
      w.child.kill("SIGKILL")
      await w.exited
      return Number.POSITIVE_INFINITY
    }
    return exited.at - t0
  }

  async stopAll() {
    if (this.local) await Effect.runPromise(Fiber.interrupt(this.local))
    await Promise.all(this.live().map((w) => this.terminate(w)))
  }
}

// ---------------------------------------------------------------------------------------------
// scenarios

type Scenario = (env: Env, row: Row) => Promise<void>

const needsProcesses = (env: Env, row: Row) => {
  if (env.shared) {
    row.status = "skip"
    row.notes.push(
      "MemoryBroker is in-process: worker processes cannot share it, so multi-process scenarios do not apply"
    )
    return true
  }
  return false
}

/** 1. N jobs, 3 worker processes at concurrency 8, handlers 5–50 ms; SIGKILL a random worker every 2 s for 30 s, respawn it. */
const killScenario: Scenario = async (env, row) => {
  if (needsProcesses(env, row)) return
  const run = await newRun(env, "kill")
  const fleet = new Fleet(run)
  try {
    const jobs = Math.round(5000 * scale)
    const window = Math.round(30_000 * Math.min(1, scale * 2))
    for (let i = 0; i < 3; i++) await fleet.spawn()
    const ids = Array.from({ length: jobs }, (_, i) => `j${i}`)
    // spread the jobs over most of the kill window, so that every kill hits in-flight work
    const producing = produce(run, ids, Math.round(window * 0.8), () => ({ ms: ms(5, 50), poison: false }), 3)
    const start = Date.now()
    const respawns: Array<Promise<unknown>> = []
    for (let tick = 1; tick * 2000 <= window; tick++) {
      // ±300 ms of jitter: the producer sends every 100 ms, and kills in lockstep with it would
      // always land at the same point of its cycle (often between batches, with nothing in flight)
      await sleep(start + tick * 2000 + Math.round((Math.random() - 0.5) * 600) - Date.now())
      // a worker that is up and consuming: killing one still starting would hit no work
      if (await fleet.killRandom()) respawns.push(fleet.spawn().catch((e) => row.violations.push(`respawn: ${e}`)))
    }
    await Promise.all(respawns)
    await producing
    await settleProducer(run)
    const faultsEnd = Date.now()
    row.drainMs = await waitDrained(run, () => true, faultsEnd, 150_000)
    if (row.drainMs === undefined) row.violations.push("not drained within 150 s after the last kill")
    await fleet.stopAll()
    const analysis = analyse(readLog(run.logFile), fleet.kills)
    checkGoodJobs(row, run.accepted, await effects(run), analysis)
    row.notes.push(
      `${fleet.kills.length} SIGKILLs, in flight at each: ${analysis.perKill.map((k) => k.inFlight).join(",")}; ${run.rejected} enqueue(s) failed (not counted)`
    )
    row.violations.push(...fleet.crashes)
  } finally {
    await fleet.stopAll()
    await closeRun(run)
  }
}

/** 2. Broker restart in the middle of a run: no confirmed job lost, consumption resumes without restarting workers. */
const restartScenario: Scenario = async (env, row) => {
  if (typeof env.restart === "string") {
    row.status = "skip"
    row.notes.push(env.restart)
    return
  }
  const restart = env.restart
  if (env.kind === "rabbitmq") {
    const others = await quietRabbitMQ()
    if (others > 0) {
      row.status = "skip"
      row.notes.push(`SKIPPED: ${others} other connection(s) on RabbitMQ (waited 60 s); stop_app would break them`)
      return
    }
  }
  const run = await newRun(env, "restart")
  const fleet = new Fleet(run)
  try {
    for (let i = 0; i < 2; i++) await fleet.spawn()
    const ids = Array.from({ length: Math.round(1000 * Math.max(scale, 0.3)) }, (_, i) => `r${i}`)
    const producing = produce(run, ids, 10_000, () => ({ ms: ms(5, 50), poison: false }), 3)
    await sleep(4000)
    const t0 = Date.now()
    const what = await restart()
    if (what?.startsWith("SKIPPED")) {
      row.status = "skip"
      row.notes.push(what)
      return
    }
    row.notes.push(
      `${what ?? "restarted"} in ${((Date.now() - t0) / 1000).toFixed(1)} s; ${run.rejected} enqueue(s) failed during it (not counted)`
    )
    await producing
    await settleProducer(run)
    const end = Date.now()
    row.drainMs = await waitDrained(run, () => true, end, 90_000)
    if (row.drainMs === undefined) row.violations.push("consumption did not resume: not drained within 90 s")
    const restarted = fleet.workers.filter((w) => w.child.exitCode !== null || w.child.signalCode !== null)
    if (restarted.length > 0) row.violations.push(`${restarted.length} worker process(es) died`)
    await fleet.stopAll()
    checkGoodJobs(row, run.accepted, await effects(run), analyse(readLog(run.logFile), []))
    row.violations.push(...fleet.crashes)
  } finally {
    await fleet.stopAll()
    await closeRun(run)
  }
}

/** 3. SIGTERM during 200 jobs of 200 ms: exit within grace + 1 s, in-flight jobs finish, nothing lost, nothing run twice. */
const sigtermScenario: Scenario = async (env, row) => {
  if (needsProcesses(env, row)) return
  const grace = 5000
  const run = await newRun(env, "sigterm", { gracePeriod: grace })
  const fleet = new Fleet(run)
  try {
    const first = (await fleet.spawn())!
    const ids = Array.from({ length: 200 }, (_, i) => `t${i}`)
    for (const id of ids) enqueue(run, id, { ms: 200, poison: false }, 3)
    await settleProducer(run)
    // let it get going: SIGTERM lands with a full set of handlers running
    await waitFor(() => readLog(run.logFile).filter((l) => l.e === "start").length >= 20, 30_000, 50)
    const t0 = Date.now()
    const exitMs = await fleet.terminate(first)
    const lines = readLog(run.logFile)
    const mine = lines.filter((l) => "pid" in l && l.pid === first.pid)
    const startedBefore = new Set(mine.filter((l) => l.e === "start" && l.t <= t0).map((l) => (l as { id: string }).id))
    const completedBefore = new Set(
      mine.filter((l) => l.e === "completed" && l.t <= t0).map((l) => (l as { id: string }).id)
    )
    const inFlight = [...startedBefore].filter((id) => !completedBefore.has(id))
    const effected = new Set(mine.filter((l) => l.e === "effect").map((l) => (l as { id: string }).id))
    const unfinished = inFlight.filter((id) => !effected.has(id))
    row.notes.push(
      `SIGTERM with ${inFlight.length} job(s) in flight; process exited in ${exitMs} ms (grace ${grace} ms)`
    )
    if (!(exitMs <= grace + 1000)) row.violations.push(`exit took ${exitMs} ms > grace + 1 s`)
    if (unfinished.length > 0) row.violations.push(`${unfinished.length} in-flight job(s) did not finish before exit`)
    // a second worker drains the rest
    await fleet.spawn()
    row.drainMs = await waitDrained(run, () => true, Date.now(), 90_000)
    if (row.drainMs === undefined) row.violations.push("the rest was not drained within 90 s")
    await fleet.stopAll()
    checkGoodJobs(
      row,
      run.accepted,
      await effects(run),
      analyse(lines.concat(readLog(run.logFile).slice(lines.length)), [])
    )
    row.inFlightAtKills = inFlight.length
    row.violations.push(...fleet.crashes)
  } finally {
    await fleet.stopAll()
    await closeRun(run)
  }
}

/** 4. SIGSTOP the broker for 10 s, then SIGCONT: no crash, consumption resumes within 30 s. */
const pauseScenario: Scenario = async (env, row) => {
  if (typeof env.pause === "string") {
    row.status = "skip"
    row.notes.push(env.pause)
    return
  }
  const pause = env.pause
  const run = await newRun(env, "pause")
  const fleet = new Fleet(run)
  try {
    if (env.kind === "rabbitmq") {
      const others = await quietRabbitMQ()
      if (others > 0) {
        row.status = "skip"
        row.notes.push(
          `SKIPPED: ${others} other connection(s) on RabbitMQ; SIGSTOP of the node would disturb them (waited 60 s)`
        )
        return
      }
    }
    for (let i = 0; i < 2; i++) await fleet.spawn()
    const ids = Array.from({ length: Math.round(600 * Math.max(scale, 0.3)) }, (_, i) => `p${i}`)
    const producing = produce(run, ids, 20_000, () => ({ ms: ms(5, 50), poison: false }), 3)
    await sleep(3000)
    let resumedAt = 0
    let stoppedState = "?"
    try {
      stoppedState = await pause.stop()
      await sleep(10_000)
    } finally {
      await pause.cont()
      resumedAt = Date.now()
    }
    // a probe job sent after SIGCONT: its effect proves the workers consume again (jobs a client
    // had prefetched before the stop would not)
    enqueue(run, "probe", { ms: 5, poison: false }, 3)
    const resumed = await waitFor(
      async () => (await run.state.hexists(effectsKey(run.runKey), "probe")) === 1,
      30_000,
      100
    )
    if (!resumed) row.violations.push("consumption did not resume: a job sent after SIGCONT was not done within 30 s")
    else
      row.notes.push(
        `stopped ${stoppedState}; a job sent after SIGCONT was done ${((Date.now() - resumedAt) / 1000).toFixed(1)} s after SIGCONT`
      )
    await producing
    await settleProducer(run)
    row.drainMs = await waitDrained(run, () => true, resumedAt, 90_000)
    if (row.drainMs === undefined) row.violations.push("not drained within 90 s of SIGCONT")
    const dead = fleet.workers.filter((w) => w.child.exitCode !== null || w.child.signalCode !== null)
    if (dead.length > 0) row.violations.push(`${dead.length} worker process(es) died`)
    await fleet.stopAll()
    checkGoodJobs(row, run.accepted, await effects(run), analyse(readLog(run.logFile), []))
    row.notes.push(`${run.rejected} enqueue(s) failed while the broker was stopped (not counted)`)
    row.violations.push(...fleet.crashes)
  } finally {
    await pause.cont().catch(() => undefined)
    await fleet.stopAll()
    await closeRun(run)
  }
}

/** 5. Poison jobs among good ones: each poison job in the DLQ after exactly max attempts; the good ones complete. */
const poisonScenario: Scenario = async (env, row) => {
  const attempts = 3
  const run = await newRun(env, "poison", { attempts })
  const fleet = new Fleet(run)
  try {
    const processes = env.shared ? 1 : 2
    for (let i = 0; i < processes; i++) await fleet.spawn()
    const ids = Array.from({ length: 330 }, (_, i) => `x${i}`)
    const poison = new Set(ids.filter((_, i) => i % 11 === 5))
    for (const id of ids) enqueue(run, id, { ms: ms(5, 20), poison: poison.has(id) }, attempts)
    await settleProducer(run)
    const t0 = Date.now()
    const acceptedPoison = [...poison].filter((id) => run.accepted.has(id))
    const dlqCount = () => run.runtime.runPromise(DeadLetters.count(run.queue)).catch(() => -1)
    const drained = await waitDrained(run, (id) => !poison.has(id), t0, 90_000)
    const dlqFull = await waitFor(async () => (await dlqCount()) >= acceptedPoison.length, 90_000, 500)
    row.drainMs = drained === undefined || !dlqFull ? undefined : Date.now() - t0
    if (row.drainMs === undefined)
      row.violations.push("good jobs not all done, or poison jobs not all dead-lettered, within 90 s")
    await sleep(1000) // nothing may run after the DLQ move: give a late duplicate the chance to show
    await fleet.stopAll()
    const lines = readLog(run.logFile)
    const analysis = analyse(lines, [])
    const good = new Set([...run.accepted].filter((id) => !poison.has(id)))
    checkGoodJobs(row, good, await effects(run), analysis)
    const letters = await run.runtime.runPromise(DeadLetters.list(run.queue, { limit: 1000 }))
    const byId = new Map(letters.map((l) => [l.id, l]))
    const wrong: Array<string> = []
    for (const id of acceptedPoison) {
      const letter = byId.get(id)
      const runs = analysis.starts.get(id)?.length ?? 0
      if (!letter) wrong.push(`${id}: not in the DLQ`)
      else if (letter.reason !== "exhausted" || letter.attempts !== attempts)
        wrong.push(`${id}: DLQ reason ${letter.reason}, attempts ${letter.attempts}`)
      if (runs !== attempts) wrong.push(`${id}: ran ${runs} time(s), expected ${attempts}`)
    }
    const goodInDlq = letters.filter((l) => !poison.has(l.id))
    if (goodInDlq.length > 0) wrong.push(`${goodInDlq.length} good job(s) in the DLQ`)
    if (wrong.length > 0) row.violations.push(`poison: ${wrong.length} problem(s): ${wrong.slice(0, 5).join("; ")}`)
    row.notes.push(
      `${acceptedPoison.length} poison job(s) dead-lettered after exactly ${attempts} attempts: ${wrong.length === 0 ? "yes" : "NO"}`
    )
    row.violations.push(...fleet.crashes)
  } finally {
    await fleet.stopAll()
    await closeRun(run)
  }
}

const scenarioFns: Record<ScenarioName, Scenario> = {
  kill: killScenario,
  restart: restartScenario,
  sigterm: sigtermScenario,
  pause: pauseScenario,
  poison: poisonScenario
}

// ---------------------------------------------------------------------------------------------

const main = async () => {
  const started = Date.now()
  say(
    `run ${runId}, adapters ${adapters.join(",")}, scenarios ${scenarios.join(",")}, scale ${scale}, logs in ${workDir}`
  )
  const rows: Array<Row> = []
  for (const kind of adapters) {
    let env: Env | undefined
    try {
      env = await makeEnv(kind)
    } catch (error) {
      const row = emptyRow(kind, "(setup)")
      row.violations.push(`could not start: ${String(error)}`)
      rows.push(finish(row))
      continue
    }
    try {
      for (const name of scenarios) {
        const row = emptyRow(kind, scenarioTitle[name])
        const t0 = Date.now()
        say(`${kind}: ${scenarioTitle[name]} …`)
        try {
          await Promise.race([
            scenarioFns[name](env, row),
            sleep(240_000).then(() => {
              throw new Error("scenario exceeded 240 s")
            })
          ])
        } catch (error) {
          row.violations.push(`scenario error: ${error instanceof Error ? error.message : String(error)}`)
        }
        rows.push(finish(row))
        say(`${kind}: ${scenarioTitle[name]}: ${row.status} in ${((Date.now() - t0) / 1000).toFixed(0)} s`)
      }
    } finally {
      await env.stop().catch(() => undefined)
    }
  }
  contAll()
  const out = table(rows)
  process.stdout.write(
    `\nErrand chaos run ${runId} (${((Date.now() - started) / 1000).toFixed(0)} s, scale ${scale})\n\n${out}\n`
  )
  const failed = rows.filter((r) => r.status === "FAIL").length
  if (!keepLogs && failed === 0) rmSync(workDir, { recursive: true, force: true })
  else process.stdout.write(`\nlogs: ${workDir}\n`)
  process.exit(failed > 0 ? 1 : 0)
}

void main().catch((error) => {
  contAll()
  console.error(error)
  process.exit(2)
})
