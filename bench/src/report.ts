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
    lines.push("| Scenario | Unit | Errand | Raw | Ratio |")
    lines.push("| --- | --- | ---: | ---: | ---: |")
    for (const r of rows) {
      const ratio =
        r.error !== undefined
          ? `error: ${r.error.replace(/\|/gu, "/")}`
          : r.ratio === undefined
            ? "—"
            : `${r.ratio.toFixed(2)}${r.ratio < target ? " ✗" : ""}`
      lines.push(`| ${r.scenario} | ${r.unit} | ${cell(r.errand)} | ${cell(r.raw)} | ${ratio} |`)
    }
  }
  if (report.skipped.length > 0) {
    lines.push("")
    lines.push("Skipped:")
    for (const s of report.skipped) lines.push(`- ${s.adapter}: ${s.reason}`)
  }
  return `${lines.join("\n")}\n`
}
