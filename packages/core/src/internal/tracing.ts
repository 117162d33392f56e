import { Effect, Tracer } from "effect"

/**
 * `Effect.withSpan`, but only when a tracing backend is installed. With Effect's default
 * `nativeTracer` nothing can observe the span (it is kept in memory and never exported), and
 * making one per job is a measurable part of core's per-job cost; Effect documents comparing the
 * active tracer against `nativeTracer` for exactly this.
 */
export const traced = <A, E, R>(
  effect: Effect.Effect<A, E, R>,
  name: string,
  options: Omit<Tracer.SpanOptions, "captureStackTrace">
): Effect.Effect<A, E, R> =>
  Effect.withFiber((fiber) =>
    fiber.getRef(Tracer.Tracer) === Tracer.nativeTracer
      ? effect
      : Effect.withSpan(effect, name, { ...options, captureStackTrace: false })
  )
