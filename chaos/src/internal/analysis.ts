/**
 * Turn a scenario's invocation log, the effects hash and the producer's accepted ids into the
 * numbers of the table, and the list of violations.
 */
import { readFileSync } from "node:fs"
import type { LogLine } from "./harness.js"

export interface Kill {
  readonly pid: number
  readonly t: number
}

export interface Row {
  readonly adapter: string
  readonly scenario: string
  status: "pass" | "FAIL" | "skip"
  accepted: number
  effected: number
  lost: number
  duplicateInvocations: number
  inFlightAtKills: number
  doubleEffects: number
  drainMs: number | undefined
  readonly notes: Array<string>
  readonly violations: Array<string>
}

export const emptyRow = (adapter: string, scenario: string): Row => ({
  adapter,
  scenario,
  status: "pass",
  accepted: 0,
  effected: 0,
  lost: 0,
  duplicateInvocations: 0,
  inFlightAtKills: 0,
  doubleEffects: 0,
  drainMs: undefined,
  notes: [],
  violations: []
})

export const readLog = (file: string): Array<LogLine> => {
  let text = ""
  try {
    text = readFileSync(file, "utf8")
  } catch {
    return []
  }
  const out: Array<LogLine> = []
  for (const line of text.split("\n")) {
    if (line.trim() === "") continue
    try {
      out.push(JSON.parse(line) as LogLine)
    } catch {
      // a SIGKILL cannot tear a single write(2), but be safe
    }
  }
  return out
}

export interface Analysis {
  readonly starts: Map<string, Array<{ pid: number; attempt: number; t: number }>>
  /** Jobs started by a killed process and not completed (claim) by it: in flight at the kill. */
  readonly inFlightAtKill: Set<string>
  /** Jobs whose effect a killed process applied without completing the claim: the guard's one window. */
  readonly effectWithoutComplete: Set<string>
  readonly perKill: Array<{ pid: number; t: number; inFlight: number }>
}

export const analyse = (lines: ReadonlyArray<LogLine>, kills: ReadonlyArray<Kill>): Analysis => {
  const starts = new Map<string, Array<{ pid: number; attempt: number; t: number }>>()
  const byPid = new Map<
    number,
    { started: Set<string>; completed: Set<string>; effected: Set<string>; failed: Set<string> }
  >()
  const of = (pid: number) => {
    let entry = byPid.get(pid)
    if (!entry)
      byPid.set(pid, (entry = { started: new Set(), completed: new Set(), effected: new Set(), failed: new Set() }))
    return entry
  }
  for (const line of lines) {
    if (line.e === "start") {
      let list = starts.get(line.id)
      if (!list) starts.set(line.id, (list = []))
      list.push({ pid: line.pid, attempt: line.attempt, t: line.t })
      of(line.pid).started.add(line.id)
    } else if (line.e === "completed") of(line.pid).completed.add(line.id)
    else if (line.e === "effect") of(line.pid).effected.add(line.id)
    else if (line.e === "fail") of(line.pid).failed.add(line.id)
  }
  const inFlightAtKill = new Set<string>()
  const effectWithoutComplete = new Set<string>()
  const perKill: Array<{ pid: number; t: number; inFlight: number }> = []
  for (const kill of kills) {
    const entry = of(kill.pid)
    let n = 0
    for (const id of entry.started) {
      if (entry.completed.has(id) || entry.failed.has(id)) continue
      n++
      inFlightAtKill.add(id)
      if (entry.effected.has(id)) effectWithoutComplete.add(id)
    }
    perKill.push({ pid: kill.pid, t: kill.t, inFlight: n })
  }
  return { starts, inFlightAtKill, effectWithoutComplete, perKill }
}

/**
 * Fill the row for good jobs: lost, effected, duplicates (bounded by the jobs in flight at the
 * kills), effects applied twice (only allowed when a killed process applied it and died before
 * completing its claim).
 */
export const checkGoodJobs = (
  row: Row,
  good: ReadonlySet<string>,
  effects: Readonly<Record<string, string>>,
  analysis: Analysis
) => {
  row.accepted = good.size
  let effected = 0
  const lost: Array<string> = []
  let duplicates = 0
  const unexplainedDuplicates: Array<string> = []
  const unexplainedDoubles: Array<string> = []
  let doubles = 0
  for (const id of good) {
    const count = Number(effects[id] ?? 0)
    if (count >= 1) effected++
    else lost.push(id)
    if (count > 1) {
      doubles++
      // explained only when a SIGKILL hit the job between its effect and the claim's completion:
      // the killed process started it and never completed the claim (the effect line itself may
      // be missing, as the kill can land between the Redis reply and the log write)
      if (!analysis.inFlightAtKill.has(id)) unexplainedDoubles.push(`${id}×${count}`)
    }
    const n = analysis.starts.get(id)?.length ?? 0
    if (n > 1) {
      duplicates += n - 1
      if (!analysis.inFlightAtKill.has(id)) unexplainedDuplicates.push(`${id}×${n}`)
    }
  }
  row.effected = effected
  row.lost = lost.length
  row.duplicateInvocations = duplicates
  row.doubleEffects = doubles
  row.inFlightAtKills = analysis.perKill.reduce((a, k) => a + k.inFlight, 0)
  if (lost.length > 0) row.violations.push(`lost ${lost.length} accepted job(s): ${lost.slice(0, 5).join(", ")}`)
  if (unexplainedDuplicates.length > 0)
    row.violations.push(
      `${unexplainedDuplicates.length} job(s) invoked more than once without being in flight at a kill: ${unexplainedDuplicates.slice(0, 5).join(", ")}`
    )
  if (duplicates > row.inFlightAtKills)
    row.violations.push(`duplicate invocations ${duplicates} > jobs in flight at kills ${row.inFlightAtKills}`)
  if (unexplainedDoubles.length > 0)
    row.violations.push(
      `${unexplainedDoubles.length} effect(s) applied more than once outside the kill window: ${unexplainedDoubles.slice(0, 5).join(", ")}`
    )
  if (doubles > unexplainedDoubles.length)
    row.notes.push(
      `${doubles - unexplainedDoubles.length} effect(s) applied twice: a worker was SIGKILLed after the effect and before completing its claim (the guard's documented limit: claim → effect → complete is not atomic)`
    )
}

export const finish = (row: Row): Row => {
  if (row.status !== "skip") row.status = row.violations.length > 0 ? "FAIL" : "pass"
  return row
}

const pad = (s: string, n: number) => (s.length >= n ? s : s + " ".repeat(n - s.length))
const padStart = (s: string, n: number) => (s.length >= n ? s : " ".repeat(n - s.length) + s)

export const table = (rows: ReadonlyArray<Row>): string => {
  const header = [
    "adapter",
    "scenario",
    "status",
    "accepted",
    "effected",
    "lost",
    "dup invocations",
    "in flight at kills",
    "double effects",
    "time to drain"
  ]
  const body = rows.map((r) => [
    r.adapter,
    r.scenario,
    r.status,
    ...(r.status === "skip"
      ? ["-", "-", "-", "-", "-", "-", "-"]
      : [
          String(r.accepted),
          String(r.effected),
          String(r.lost),
          String(r.duplicateInvocations),
          String(r.inFlightAtKills),
          String(r.doubleEffects),
          r.drainMs === undefined ? "-" : `${(r.drainMs / 1000).toFixed(1)} s`
        ])
  ])
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)))
  const line = (cells: ReadonlyArray<string>) =>
    "| " + cells.map((c, i) => (i >= 3 ? padStart(c, widths[i]!) : pad(c, widths[i]!))).join(" | ") + " |"
  const sep = "|" + widths.map((w, i) => (i >= 3 ? "-".repeat(w + 1) + ":" : "-".repeat(w + 2))).join("|") + "|"
  const out = [line(header), sep, ...body.map(line)]
  const notes: Array<string> = []
  for (const r of rows) {
    for (const v of r.violations) notes.push(`- VIOLATION ${r.adapter} / ${r.scenario}: ${v}`)
    for (const n of r.notes) notes.push(`- ${r.adapter} / ${r.scenario}: ${n}`)
  }
  return out.join("\n") + (notes.length > 0 ? "\n\n" + notes.join("\n") : "")
}
