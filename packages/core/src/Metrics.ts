/**
 * Effect metrics for every queue, tagged by `queue` and `job`: enqueued, started, completed,
 * retried, failed (attempts), dead-lettered, and histograms of processing time and queue wait.
 * Export them with any Effect metrics exporter (`effect/observability`).
 *
 * @since 0.1.0
 */
import { Metric } from "effect"

const counters = {
  enqueued: { name: "errand_jobs_enqueued_total", description: "Jobs accepted by the broker" },
  started: { name: "errand_jobs_started_total", description: "Handler runs started" },
  completed: { name: "errand_jobs_completed_total", description: "Handler runs that succeeded" },
  retried: { name: "errand_jobs_retried_total", description: "Failed runs scheduled for another attempt" },
  failed: { name: "errand_jobs_failed_total", description: "Handler runs that failed (any outcome but success)" },
  deadLettered: { name: "errand_jobs_dead_lettered_total", description: "Jobs moved to the dead-letter queue" }
} as const

const histograms = {
  processingTime: { name: "errand_job_processing_ms", description: "Handler run time in milliseconds" },
  queueWait: {
    name: "errand_job_queue_wait_ms",
    description: "Time from enqueue (or due time) to handler start, in milliseconds"
  }
} as const

const msBoundaries = Metric.exponentialBoundaries({ start: 1, factor: 2, count: 24 })

const counter = (key: keyof typeof counters, attributes?: Metric.Metric.Attributes) =>
  Metric.counter(counters[key].name, {
    description: counters[key].description,
    incremental: true,
    ...(attributes ? { attributes } : {})
  })

const histogram = (key: keyof typeof histograms, attributes?: Metric.Metric.Attributes) =>
  Metric.histogram(histograms[key].name, {
    description: histograms[key].description,
    boundaries: msBoundaries,
    ...(attributes ? { attributes } : {})
  })

/** @since 0.1.0 */
export const enqueued = counter("enqueued")
/** @since 0.1.0 */
export const started = counter("started")
/** @since 0.1.0 */
export const completed = counter("completed")
/** @since 0.1.0 */
export const retried = counter("retried")
/** @since 0.1.0 */
export const failed = counter("failed")
/** @since 0.1.0 */
export const deadLettered = counter("deadLettered")
/** @since 0.1.0 */
export const processingTime = histogram("processingTime")
/** @since 0.1.0 */
export const queueWait = histogram("queueWait")

type Tagged = {
  readonly enqueued: Metric.Metric<number, unknown>
  readonly started: Metric.Metric<number, unknown>
  readonly completed: Metric.Metric<number, unknown>
  readonly retried: Metric.Metric<number, unknown>
  readonly failed: Metric.Metric<number, unknown>
  readonly deadLettered: Metric.Metric<number, unknown>
  readonly processingTime: Metric.Metric<number, unknown>
  readonly queueWait: Metric.Metric<number, unknown>
}

const cache = new Map<string, Tagged>()

/**
 * The metrics tagged for one queue and job name (cached: hot paths call this per job).
 *
 * @since 0.1.0
 */
export const tagged = (queue: string, job: string): Tagged => {
  const cacheKey = `${queue}\u0000${job}`
  let entry = cache.get(cacheKey)
  if (entry === undefined) {
    // The same series as `Metric.withAttributes(enqueued, { queue, job })`, built with the attributes
    // instead: a `withAttributes` metric copies the fiber's context on every update.
    const attributes = { queue, job }
    entry = {
      enqueued: counter("enqueued", attributes),
      started: counter("started", attributes),
      completed: counter("completed", attributes),
      retried: counter("retried", attributes),
      failed: counter("failed", attributes),
      deadLettered: counter("deadLettered", attributes),
      processingTime: histogram("processingTime", attributes),
      queueWait: histogram("queueWait", attributes)
    }
    if (cache.size < 10_000) cache.set(cacheKey, entry)
  }
  return entry
}
