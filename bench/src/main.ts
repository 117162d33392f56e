/**
 * Errand against the raw broker clients, side by side, in one process on the same broker.
 *
 *   node --expose-gc --import tsx --conditions=source bench/src/main.ts [--quick] [--only=memory,bullmq,bullmq-plain,rabbitmq,rabbitmq-plain,sqs] [--runs=N]
 *
 * Prints a table and writes bench/results/latest.{md,json} (quick runs: quick.{md,json}).
 */
import { mkdirSync, writeFileSync } from "node:fs"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"
import { type AdapterName, adapterNames, open, type Opened } from "./adapters.js"
import { freshQueue, now, quantile, rate, reasonOf, sleep, summarize, type Summary, within } from "./harness.js"
import { type Row, renderMarkdown } from "./report.js"
import type { Side } from "./side.js"
import * as Calls from "./calls.js"
import { environment } from "./versions.js"

interface Settings {
  readonly quick: boolean
  readonly runs: number
  readonly only: ReadonlyArray<AdapterName>
  readonly timeout: number
  /** Count broker calls per job (`--calls`). */
  readonly calls: boolean
  /** Scenario keys to run (all when undefined). */
  readonly scenarios: ReadonlyArray<string> | undefined
}

const parse = (argv: ReadonlyArray<string>): Settings => {
  let quick = false
  let runs: number | undefined
  let only: Array<AdapterName> = [...adapterNames]
  let scenarios: Array<string> | undefined
  let calls = false
  for (const arg of argv) {
    if (arg === "--") continue
    if (arg === "--quick") quick = true
    else if (arg === "--calls") calls = true
    else if (arg.startsWith("--only=")) {
      const wanted = arg
        .slice("--only=".length)
        .split(",")
        .map((s) => s.trim())
        .filter((s) => s !== "")
      const unknown = wanted.filter((w) => !adapterNames.includes(w as AdapterName))
      if (unknown.length > 0)
        throw new Error(`unknown adapter(s) ${unknown.join(", ")}; known: ${adapterNames.join(", ")}`)
      only = adapterNames.filter((a) => wanted.includes(a))
    } else if (arg.startsWith("--runs=")) {
      runs = Number(arg.slice("--runs=".length))
      if (!Number.isInteger(runs) || runs < 1 || runs > 20) throw new Error("--runs must be an integer from 1 to 20")
    } else if (arg.startsWith("--scenarios=")) {
      scenarios = arg
        .slice("--scenarios=".length)
        .split(",")
        .map((s) => s.trim())
        .filter((s) => s !== "")
    } else if (arg === "--help" || arg === "-h") {
      console.log(
        `usage: pnpm bench [--quick] [--only=${adapterNames.join(",")}] [--runs=N] [--calls] [--scenarios=${scenarioKeys.join(",")}]`
      )
      process.exit(0)
    } else throw new Error(`unknown argument ${arg}`)
  }
  return { quick, runs: runs ?? (quick ? 1 : 3), only, timeout: quick ? 30_000 : 180_000, scenarios, calls }
}

/** Counts per scenario: the issue's in a full run, a tenth or so in quick mode. */
const sizes = (quick: boolean) => ({
  sequential: quick ? 100 : 1000,
  concurrent: quick ? 200 : 1000,
  bulk: quick ? 1000 : 10_000,
  workC1: quick ? 100 : 1000,
  workC100: quick ? 1000 : 10_000,
  endToEnd: quick ? 2000 : 20_000,
  endToEndChunk: 100,
  latency: quick ? 60 : 600,
  latencyRate: 200,
  latencyConcurrency: 10,
  memoryEndToEnd: quick ? 20_000 : 100_000,
  memoryHeap: quick ? 20_000 : 100_000,
  warmup: quick ? 200 : 1000,
  warmupRounds: quick ? 1 : 3
})

type Sizes = ReturnType<typeof sizes>

interface Throughput {
  readonly kind: "throughput"
  readonly key: string
  readonly label: (s: Sizes) => string
  readonly count: (s: Sizes) => number
  readonly fill: boolean
  readonly run: (side: Side, queue: string, s: Sizes) => Promise<number>
}

const throughputScenarios: ReadonlyArray<Throughput> = [
  {
    kind: "throughput",
    key: "enqueue-sequential",
    label: (s) => `${fmtInt(s.sequential)} sequential single enqueues`,
    count: (s) => s.sequential,
    fill: false,
    run: (side, q, s) => side.enqueueSequential(q, s.sequential)
  },
  {
    kind: "throughput",
    key: "enqueue-concurrent",
    label: (s) => `${fmtInt(s.concurrent)} concurrent single enqueues`,
    count: (s) => s.concurrent,
    fill: false,
    run: (side, q, s) => side.enqueueConcurrent(q, s.concurrent)
  },
  {
    kind: "throughput",
    key: "enqueue-bulk",
    label: (s) => `${fmtInt(s.bulk)} bulk enqueues (one call)`,
    count: (s) => s.bulk,
    fill: false,
    run: (side, q, s) => side.enqueueBulk(q, s.bulk)
  },
  {
    kind: "throughput",
    key: "worker-c1",
    label: (s) => `${fmtInt(s.workC1)} jobs, worker concurrency 1`,
    count: (s) => s.workC1,
    fill: true,
    run: (side, q, s) => side.work(q, s.workC1, 1)
  },
  {
    kind: "throughput",
    key: "worker-c100",
    label: (s) => `${fmtInt(s.workC100)} jobs, worker concurrency 100`,
    count: (s) => s.workC100,
    fill: true,
    run: (side, q, s) => side.work(q, s.workC100, 100)
  },
  {
    kind: "throughput",
    key: "end-to-end",
    label: (s) => `${fmtInt(s.endToEnd)} jobs end to end (producer + worker c100)`,
    count: (s) => s.endToEnd,
    fill: false,
    run: (side, q, s) => side.endToEnd(q, s.endToEnd, 100, s.endToEndChunk)
  }
]

const scenarioKeys = [...throughputScenarios.map((s) => s.key), "latency", "memory-end-to-end", "memory-heap", "warmup"]

const fmtInt = (n: number) => n.toLocaleString("en-US")

const log = (text: string) => process.stderr.write(`${text}\n`)

/** Run one measurement on a fresh queue, then delete the queue whatever happened. */
const onFreshQueue = async <A>(
  adapter: string,
  side: "errand" | "raw",
  key: string,
  target: Side,
  settings: Settings,
  body: (queue: string) => Promise<A>
): Promise<A> => {
  const queue = freshQueue(adapter, side === "errand" ? "e" : "r", key)
  try {
    await within(target.prepare(queue), 30_000, `prepare ${queue}`)
    return await within(body(queue), settings.timeout + 5000, `${side} ${key}`)
  } finally {
    await within(target.cleanup(queue), 30_000, `cleanup ${queue}`).catch((error) =>
      log(`  (cleanup of ${queue} failed: ${reasonOf(error)})`)
    )
  }
}

/** Both sides, `runs` times, alternating which goes first. */
const pairRuns = async <A>(
  settings: Settings,
  opened: Opened,
  measure: (target: Side, side: "errand" | "raw") => Promise<A>
): Promise<{ errand: Array<A>; raw: Array<A> }> => {
  const errand: Array<A> = []
  const raw: Array<A> = []
  for (let r = 0; r < settings.runs; r++) {
    const order: Array<"errand" | "raw"> = r % 2 === 0 ? ["errand", "raw"] : ["raw", "errand"]
    for (const side of order) {
      const value = await measure(side === "errand" ? opened.errand : opened.raw, side)
      ;(side === "errand" ? errand : raw).push(value)
    }
  }
  return { errand, raw }
}

const gc = (): boolean => {
  const collect = (globalThis as { gc?: () => void }).gc
  if (collect === undefined) return false
  collect()
  collect()
  return true
}

const benchAdapter = async (adapter: AdapterName, opened: Opened, settings: Settings, rows: Array<Row>) => {
  const s = sizes(settings.quick)
  const row = (partial: Omit<Row, "adapter" | "raw label">) => {
    const full: Row = { adapter, "raw label": opened.rawLabel, ...partial }
    rows.push(full)
    const ratio = full.ratio === undefined ? "" : `  ratio ${full.ratio.toFixed(2)}`
    log(
      `  ${full.scenario}: errand ${full.errand ? full.errand.median.toFixed(1) : "-"} / raw ${
        full.raw ? full.raw.median.toFixed(1) : "-"
      } ${full.unit}${ratio}${full.error ? `  ERROR ${full.error}` : ""}`
    )
  }

  const wanted = (key: string) => settings.scenarios === undefined || settings.scenarios.includes(key)

  // Warm both sides up (JIT, connections, scripts loaded into Redis), untimed.
  if (wanted("warmup"))
    for (const [side, target] of [
      ["errand", opened.errand],
      ["raw", opened.raw]
    ] as const) {
      await onFreshQueue(adapter, side, "warmup", target, settings, async (queue) => {
        // every path the scenarios take, a few rounds, so no side is timed while V8 is still
        // compiling it (Errand has more code to compile than a raw client: it takes longer)
        for (let round = 0; round < s.warmupRounds; round++) {
          await target.enqueueSequential(queue, s.warmup)
          await target.enqueueConcurrent(queue, s.warmup)
          await target.work(queue, s.warmup * 2, 1)
          await target.endToEnd(queue, s.warmup * 2, 100, s.endToEndChunk)
        }
      }).catch((error) => log(`  warm-up (${side}) failed: ${reasonOf(error)}`))
    }

  for (const scenario of throughputScenarios) {
    if (!wanted(scenario.key)) continue
    const n = scenario.count(s)
    try {
      const runs = await pairRuns(settings, opened, (target, side) =>
        onFreshQueue(adapter, side, scenario.key, target, settings, async (queue) => {
          if (scenario.fill) await target.fill(queue, n)
          const before = settings.calls ? Calls.snapshot() : undefined
          const cpuBefore = process.cpuUsage()
          const ms = await scenario.run(target, queue, s)
          const cpu = process.cpuUsage(cpuBefore)
          return {
            rate: rate(n, ms),
            cpu: (cpu.user + cpu.system) / n,
            calls: before === undefined ? undefined : Calls.perJob(before, Calls.snapshot(), n)
          }
        })
      )
      const errand = summarize(runs.errand.map((r) => r.rate))
      const raw = summarize(runs.raw.map((r) => r.rate))
      row({
        key: scenario.key,
        scenario: scenario.label(s),
        unit: "jobs/s",
        errand,
        raw,
        ratio: errand.median / raw.median,
        cpu: {
          errand: summarize(runs.errand.map((r) => r.cpu)).median,
          raw: summarize(runs.raw.map((r) => r.cpu)).median
        },
        ...(settings.calls ? { calls: { errand: runs.errand[0]!.calls!, raw: runs.raw[0]!.calls! } } : {})
      })
    } catch (error) {
      row({ key: scenario.key, scenario: scenario.label(s), unit: "jobs/s", error: reasonOf(error) })
    }
  }

  // Enqueue-to-start latency at a steady, moderate rate (open loop).
  if (wanted("latency")) await latency()
  async function latency() {
    const latencyLabel = `enqueue-to-start latency, ${fmtInt(s.latency)} jobs at ${s.latencyRate}/s, worker c${s.latencyConcurrency}`
    try {
      const runs = await pairRuns(settings, opened, (target, side) =>
        onFreshQueue(adapter, side, "latency", target, settings, (queue) =>
          target.latency(queue, s.latency, s.latencyRate, s.latencyConcurrency)
        )
      )
      for (const [key, q] of [
        ["latency-p50", 0.5],
        ["latency-p99", 0.99]
      ] as const) {
        const errand = summarize(runs.errand.map((samples) => quantile(samples, q)))
        const raw = summarize(runs.raw.map((samples) => quantile(samples, q)))
        row({
          key,
          scenario: `${latencyLabel}: ${key.slice(-3)}`,
          unit: "ms",
          errand,
          raw,
          // lower is better: >1 still means Errand is faster
          ratio: raw.median / errand.median
        })
      }
    } catch (error) {
      row({ key: "latency", scenario: latencyLabel, unit: "ms", error: reasonOf(error) })
    }
  }

  if (adapter !== "memory") return

  // MemoryBroker extras: 100,000 jobs end to end at concurrency 100, per-job cost, heap.
  const n = s.memoryEndToEnd
  if (wanted("memory-end-to-end"))
    try {
      const runs = await pairRuns(settings, opened, (target, side) =>
        onFreshQueue(adapter, side, "e2e-big", target, settings, async (queue) =>
          rate(n, await target.endToEnd(queue, n, 100, s.endToEndChunk))
        )
      )
      const errand = summarize(runs.errand)
      const raw = summarize(runs.raw)
      row({
        key: "memory-end-to-end",
        scenario: `${fmtInt(n)} jobs end to end, concurrency 100`,
        unit: "jobs/s",
        errand,
        raw,
        ratio: errand.median / raw.median
      })
      const micros = (x: Summary): Summary => summarize(x.runs.map((v) => 1e6 / v))
      const errandMicros = micros(errand)
      const rawMicros = micros(raw)
      row({
        key: "memory-per-job",
        scenario: `time per job, end to end (µs); core's own overhead ≈ ${(errandMicros.median - rawMicros.median).toFixed(1)} µs/job`,
        unit: "µs/job",
        errand: errandMicros,
        raw: rawMicros,
        ratio: rawMicros.median / errandMicros.median
      })
    } catch (error) {
      row({
        key: "memory-end-to-end",
        scenario: `${fmtInt(n)} jobs end to end`,
        unit: "jobs/s",
        error: reasonOf(error)
      })
    }

  const heapN = s.memoryHeap
  if (!wanted("memory-heap")) return
  if (!gc()) {
    row({
      key: "memory-heap",
      scenario: `heap with ${fmtInt(heapN)} jobs waiting`,
      unit: "bytes/job",
      error: "global.gc is missing: run node with --expose-gc"
    })
    return
  }
  try {
    const runs = await pairRuns(settings, opened, (target, side) =>
      onFreshQueue(adapter, side, "heap", target, settings, async (queue) => {
        gc()
        const before = process.memoryUsage().heapUsed
        await target.fill(queue, heapN)
        gc()
        const after = process.memoryUsage().heapUsed
        return (after - before) / heapN
      })
    )
    const errand = summarize(runs.errand)
    const raw = summarize(runs.raw)
    row({
      key: "memory-heap",
      scenario: `heap per waiting job, ${fmtInt(heapN)} jobs waiting (errand ≈ ${((errand.median * heapN) / 2 ** 20).toFixed(1)} MiB)`,
      unit: "bytes/job",
      errand,
      raw,
      ratio: raw.median / errand.median
    })
  } catch (error) {
    row({
      key: "memory-heap",
      scenario: `heap with ${fmtInt(heapN)} jobs waiting`,
      unit: "bytes/job",
      error: reasonOf(error)
    })
  }
}

const main = async () => {
  const settings = parse(process.argv.slice(2))
  process.on("unhandledRejection", (error) => log(`(unhandled rejection: ${reasonOf(error)})`))
  if (settings.calls) await Calls.install()
  const startedAt = new Date()
  const started = now()
  const rows: Array<Row> = []
  const skipped: Array<{ adapter: string; reason: string }> = []
  const brokerVersions: Record<string, string> = {}
  const loadBefore = (await import("node:os")).loadavg()
  log(
    `errand bench: ${settings.quick ? "quick" : "full"}, ${settings.runs} run(s), adapters ${settings.only.join(", ")}`
  )
  for (const adapter of settings.only) {
    log(`${adapter}:`)
    let opened: Opened
    try {
      opened = await within(open(adapter, settings.timeout), 60_000, `opening ${adapter}`)
    } catch (error) {
      const reason = reasonOf(error)
      log(`  skipped: ${reason}`)
      skipped.push({ adapter, reason })
      continue
    }
    Object.assign(brokerVersions, opened.versions)
    try {
      await benchAdapter(adapter, opened, settings, rows)
    } catch (error) {
      const reason = reasonOf(error)
      log(`  aborted: ${reason}`)
      skipped.push({ adapter, reason: `aborted: ${reason}` })
    } finally {
      await within(opened.close(), 15_000, `closing ${adapter}`).catch(() => {})
      await sleep(200)
    }
  }
  const env = await environment(brokerVersions, loadBefore)
  const report = {
    mode: settings.quick ? "quick" : "full",
    runs: settings.runs,
    startedAt: startedAt.toISOString(),
    durationSeconds: Math.round((now() - started) / 1000),
    environment: env,
    results: rows,
    skipped
  }
  const markdown = renderMarkdown(report)
  process.stdout.write(`\n${markdown}\n`)
  const dir = join(dirname(fileURLToPath(import.meta.url)), "..", "results")
  mkdirSync(dir, { recursive: true })
  // A run of every adapter is `latest` (or `quick`); a run of some is saved beside it, named after them.
  const all = settings.only.length === adapterNames.length && settings.scenarios === undefined
  const base = `${settings.quick ? "quick" : "latest"}${all ? "" : `-${settings.only.join("-")}`}`
  writeFileSync(join(dir, `${base}.md`), markdown)
  writeFileSync(join(dir, `${base}.json`), `${JSON.stringify(report, null, 2)}\n`)
  log(`written: bench/results/${base}.md, bench/results/${base}.json (${report.durationSeconds} s)`)
}

main().then(
  () => process.exit(0),
  (error) => {
    log(`bench failed: ${reasonOf(error)}`)
    process.exit(1)
  }
)
