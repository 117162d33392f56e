/**
 * Timing, counting and statistics shared by every side of the bench.
 */
import { performance } from "node:perf_hooks"

/** Median, minimum and maximum of some runs. */
export interface Summary {
  readonly median: number
  readonly min: number
  readonly max: number
  readonly runs: ReadonlyArray<number>
}

export const summarize = (runs: ReadonlyArray<number>): Summary => {
  const sorted = [...runs].sort((a, b) => a - b)
  const n = sorted.length
  const median = n === 0 ? NaN : n % 2 === 1 ? sorted[(n - 1) / 2]! : (sorted[n / 2 - 1]! + sorted[n / 2]!) / 2
  return { median, min: sorted[0] ?? NaN, max: sorted[n - 1] ?? NaN, runs }
}

/** The `q`-quantile (0..1) of some samples, nearest rank. */
export const quantile = (samples: ReadonlyArray<number>, q: number): number => {
  if (samples.length === 0) return NaN
  const sorted = [...samples].sort((a, b) => a - b)
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))
  return sorted[rank]!
}

export const now = (): number => performance.now()

/** Jobs per second for `count` jobs in `ms` milliseconds. */
export const rate = (count: number, ms: number): number => (count * 1000) / ms

/**
 * Counts handler runs; `done` resolves when `n` were counted and rejects after `timeoutMs`, so a
 * stuck side fails its scenario instead of hanging the bench.
 */
export interface Counter {
  readonly hit: () => void
  readonly done: Promise<void>
  readonly count: () => number
}

export const counter = (n: number, timeoutMs: number, label: string): Counter => {
  let count = 0
  let resolve!: () => void
  let reject!: (error: Error) => void
  const done = new Promise<void>((res, rej) => {
    resolve = res
    reject = rej
  })
  const timer = setTimeout(
    () => reject(new Error(`${label}: timed out after ${timeoutMs} ms with ${count}/${n} jobs processed`)),
    timeoutMs
  )
  done.catch(() => {}).finally(() => clearTimeout(timer))
  if (n <= 0) resolve()
  return {
    hit: () => {
      count++
      if (count === n) resolve()
    },
    done,
    count: () => count
  }
}

/** Reject when `promise` takes longer than `ms`. */
export const within = <A>(promise: Promise<A>, ms: number, label: string): Promise<A> => {
  let timer: ReturnType<typeof setTimeout> | undefined
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${label}: timed out after ${ms} ms`)), ms)
  })
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer))
}

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

/**
 * Call `fire(i)` for i in 0..n-1 at `perSecond`, open loop (never waiting on `fire`), correcting
 * for timer drift. Resolves once the last one was fired.
 */
export const pace = async (n: number, perSecond: number, fire: (i: number) => void): Promise<void> => {
  const interval = 1000 / perSecond
  const start = now()
  for (let i = 0; i < n; i++) {
    const due = start + i * interval
    const wait = due - now()
    if (wait > 1) await sleep(wait)
    fire(i)
  }
}

let sequence = 0
const started = Date.now().toString(36)
/** A queue name no other scenario used (letters, digits and '-' only: valid on every broker). */
export const freshQueue = (adapter: string, side: string, scenario: string): string =>
  `bench-${adapter}-${side}-${scenario}-${process.pid}-${started}-${(sequence++).toString(36)}`

/** The message of an unknown throwable, one line, with no URL credentials. */
export const reasonOf = (error: unknown): string => {
  const text =
    error instanceof Error
      ? error.message
      : typeof error === "object" && error !== null && "message" in error
        ? String((error as { message: unknown }).message)
        : String(error)
  return text
    .replace(/\/\/[^/@\s]*@/gu, "//")
    .split("\n")[0]!
    .slice(0, 300)
}
