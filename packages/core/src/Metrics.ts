/**
 * Effect metrics for every queue, tagged by `queue` and `job`: enqueued, started, completed,
 * retried, failed (attempts), dead-lettered, and histograms of processing time and queue wait.
 * Export them with any Effect metrics exporter (`effect/observability`).
 *
 * @since 0.1.0
 */
import { Metric } from "effect"

/** @since 0.1.0 */
export const enqueued = Metric.counter("errand_jobs_enqueued_total", {
  description: "Jobs accepted by the broker",
  incremental: true
})
/** @since 0.1.0 */
export const started = Metric.counter("errand_jobs_started_total", {
  description: "Handler runs started",
  incremental: true
})
/** @since 0.1.0 */
export const completed = Metric.counter("errand_jobs_completed_total", {
  description: "Handler runs that succeeded",
  incremental: true
})
/** @since 0.1.0 */
export const retried = Metric.counter("errand_jobs_retried_total", {
  description: "Failed runs scheduled for another attempt",
  incremental: true
})
/** @since 0.1.0 */
export const failed = Metric.counter("errand_jobs_failed_total", {
  description: "Handler runs that failed (any outcome but success)",
  incremental: true
})
/** @since 0.1.0 */
export const deadLettered = Metric.counter("errand_jobs_dead_lettered_total", {
  description: "Jobs moved to the dead-letter queue",
  incremental: true
})

const msBoundaries = Metric.exponentialBoundaries({ start: 1, factor: 2, count: 24 })

/** @since 0.1.0 */
export const processingTime = Metric.histogram("errand_job_processing_ms", {
  description: "Handler run time in milliseconds",
  boundaries: msBoundaries
})
/** @since 0.1.0 */
export const queueWait = Metric.histogram("errand_job_queue_wait_ms", {
  description: "Time from enqueue (or due time) to handler start, in milliseconds",
  boundaries: msBoundaries
})

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
    const attributes = { queue, job }
    entry = {
      enqueued: Metric.withAttributes(enqueued, attributes),
      started: Metric.withAttributes(started, attributes),
      completed: Metric.withAttributes(completed, attributes),
      retried: Metric.withAttributes(retried, attributes),
      failed: Metric.withAttributes(failed, attributes),
      deadLettered: Metric.withAttributes(deadLettered, attributes),
      processingTime: Metric.withAttributes(processingTime, attributes),
      queueWait: Metric.withAttributes(queueWait, attributes)
    }
    if (cache.size < 10_000) cache.set(cacheKey, entry)
  }
  return entry
}
