/**
 * The results table (Markdown) from the rows the bench measured.
 */
import type { Summary } from "./harness.js"
import type { Environment } from "./versions.js"

export interface Row {
  readonly adapter: string
  readonly "raw label": string
  readonly key: string
  readonly scenario: string
  readonly unit: string
  readonly errand?: Summary | undefined
  readonly raw?: Summary | undefined
  /** Errand / raw as throughput: above 1 means Errand is faster (or leaner). */
  readonly ratio?: number | undefined
  readonly error?: string | undefined
  /** Process CPU time per job, µs (median of runs): less sensitive to a loaded machine than wall time. */
  readonly cpu?: { readonly errand: number; readonly raw: number } | undefined
  /** Broker calls per job (`--calls`), from the first run of each side. */
  readonly calls?: { readonly errand: Record<string, number>; readonly raw: Record<string, number> } | undefined
}

export interface Report {
  readonly mode: string
  readonly runs: number
  readonly startedAt: string
  readonly durationSeconds: number
  readonly environment: Environment
  readonly results: ReadonlyArray<Row>
  readonly skipped: ReadonlyArray<{ readonly adapter: string; readonly reason: string }>
}

/** The ratio the issue asks for on every scenario. */
export const target = 0.95

const number = (x: number): string => {
  if (!Number.isFinite(x)) return String(x)
  const abs = Math.abs(x)
  const digits = abs >= 100 ? 0 : abs >= 10 ? 1 : 2
  return x.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits })
}

const cell = (summary: Summary | undefined): string =>
  summary === undefined
    ? "—"
    : summary.runs.length === 1
      ? number(summary.median)
      : `${number(summary.median)} (${number(summary.min)}–${number(summary.max)})`

export const renderMarkdown = (report: Report): string => {
  const env = report.environment
  const lines: Array<string> = []
  lines.push(
    `Errand bench, ${report.mode} mode: each figure is the median of ${report.runs} run(s)${
      report.runs > 1 ? " (min–max in brackets)" : ""
    }. Ratio = Errand / raw as throughput (above 1: Errand is faster); below ${target} is marked ✗.`
  )
  lines.push("")
  lines.push(
    `Machine: ${env.cores} cores (${env.cpu}), ${env.memoryGiB} GiB, ${env.platform}; load average ${env.loadAverageBefore.join(" ")} before, ${env.loadAverageAfter.join(" ")} after. ${report.startedAt}, ${report.durationSeconds} s.`
  )
  lines.push(
    `Node ${env.node}. Brokers: ${
      Object.entries(env.brokers)
        .map(([k, v]) => `${k} ${v}`)
        .join(", ") || "none reached"
    }. Clients: ${Object.entries(env.clients)
      .map(([k, v]) => `${k} ${v}`)
      .join(", ")}.`
  )
  const adapters = [...new Set(report.results.map((r) => r.adapter))]
  for (const adapter of adapters) {
    const rows = report.results.filter((r) => r.adapter === adapter)
    lines.push("")
    lines.push(`### ${adapter} — raw side: ${rows[0]!["raw label"]}`)
    lines.push("")
    lines.push("| Scenario | Unit | Errand | Raw | Ratio | CPU µs/job Errand / raw |")
    lines.push("| --- | --- | ---: | ---: | ---: | ---: |")
    for (const r of rows) {
      const ratio =
        r.error !== undefined
          ? `error: ${r.error.replace(/\|/gu, "/")}`
          : r.ratio === undefined
            ? "—"
            : `${r.ratio.toFixed(2)}${r.ratio < target ? " ✗" : ""}`
      const cpu = r.cpu === undefined ? "—" : `${number(r.cpu.errand)} / ${number(r.cpu.raw)}`
      lines.push(`| ${r.scenario} | ${r.unit} | ${cell(r.errand)} | ${cell(r.raw)} | ${ratio} | ${cpu} |`)
    }
    const withCalls = rows.filter((r) => r.calls !== undefined)
    if (withCalls.length > 0) {
      const show = (calls: Record<string, number>) =>
        Object.entries(calls)
          .map(([k, v]) => `${k} ${v}`)
          .join(", ")
      lines.push("")
      lines.push(`Broker calls per job (${adapter}, \`--calls\`):`)
      lines.push("")
      lines.push("| Scenario | Errand | Raw |")
      lines.push("| --- | --- | --- |")
      for (const r of withCalls) lines.push(`| ${r.scenario} | ${show(r.calls!.errand)} | ${show(r.calls!.raw)} |`)
    }
  }
  if (report.skipped.length > 0) {
    lines.push("")
    lines.push("Skipped:")
    for (const s of report.skipped) lines.push(`- ${s.adapter}: ${s.reason}`)
  }
  return `${lines.join("\n")}\n`
}
