import { Duration, Effect, Pull, Schedule } from "effect"

/**
 * The delay before the retry that follows failed attempt `attempt` (1-based). The schedule is
 * replayed from the start each time (its input is the attempt number) because consecutive attempts
 * of one job can run in different processes; the same approach as effect's PersistedQueue.
 */
export const retryDelay = Effect.fnUntraced(function* (
  schedule: Schedule.Schedule<unknown, number>,
  attempt: number
): Effect.fn.Return<number> {
  const step = yield* Schedule.toStep(schedule)
  let now = 0
  let delay = Duration.zero
  for (let i = 0; i < attempt; i++) {
    const result = yield* Pull.catchDone(step(now, i + 1), () => Effect.undefined)
    if (result === undefined) break
    delay = result[1]
    now += Duration.toMillis(delay)
  }
  return Math.max(0, Duration.toMillis(delay))
})
