import { Duration, Effect, Option } from "effect"
import { InvalidOption } from "../Errors.js"

const invalid = (option: string, reason: string) => new InvalidOption({ option, reason })

/** A finite, non-negative duration in ms, or the InvalidOption (synchronous, for hot paths). */
export const durationSync = (
  option: string,
  input: Duration.Input | undefined,
  fallback: number
): number | InvalidOption => {
  if (input === undefined) return fallback
  if (typeof input === "number") {
    if (!Number.isFinite(input))
      return invalid(option, `must be a finite number of milliseconds (got ${String(input)})`)
    if (input < 0) return invalid(option, `must not be negative (got ${input})`)
    return input
  }
  const parsed = Duration.fromInput(input)
  if (Option.isNone(parsed)) return invalid(option, `is not a duration: ${safe(input)}`)
  const ms = Duration.toMillis(parsed.value)
  if (!Number.isFinite(ms)) return invalid(option, "must be finite")
  if (ms < 0) return invalid(option, "must not be negative")
  return ms
}

/** An integer within [min, max], or the InvalidOption (synchronous). */
export const integerSync = (
  option: string,
  value: number | undefined,
  fallback: number,
  min: number,
  max: number
): number | InvalidOption => {
  if (value === undefined) return fallback
  if (typeof value !== "number" || !Number.isInteger(value) || value < min || value > max) {
    return invalid(
      option,
      `must be an integer from ${min} to ${max === Number.MAX_SAFE_INTEGER ? "∞" : max} (got ${safe(value)})`
    )
  }
  return value
}

/** A non-empty string of bounded length (or undefined), or the InvalidOption (synchronous). */
export const keySync = (
  option: string,
  value: string | undefined,
  maxLength = 512
): string | undefined | InvalidOption => {
  if (value === undefined) return undefined
  if (typeof value !== "string" || value.length === 0 || value.length > maxLength) {
    return invalid(option, `must be a non-empty string of at most ${maxLength} characters`)
  }
  return value
}

/** A finite, non-negative duration in ms, or InvalidOption. */
export const duration = (option: string, input: Duration.Input | undefined, fallback: number) =>
  Effect.suspend((): Effect.Effect<number, InvalidOption> => {
    const result = durationSync(option, input, fallback)
    return result instanceof InvalidOption ? Effect.fail(result) : Effect.succeed(result)
  })

/** An integer within [min, max], or InvalidOption. */
export const integer = (option: string, value: number | undefined, fallback: number, min: number, max: number) =>
  Effect.suspend((): Effect.Effect<number, InvalidOption> => {
    if (value === undefined) return Effect.succeed(fallback)
    if (typeof value !== "number" || !Number.isInteger(value) || value < min || value > max) {
      return fail(
        option,
        `must be an integer from ${min} to ${max === Number.MAX_SAFE_INTEGER ? "∞" : max} (got ${safe(value)})`
      )
    }
    return Effect.succeed(value)
  })

/** A non-empty string of bounded length, or InvalidOption. */
export const key = (option: string, value: string | undefined, maxLength = 512) =>
  Effect.suspend((): Effect.Effect<string | undefined, InvalidOption> => {
    if (value === undefined) return Effect.succeed(undefined)
    if (typeof value !== "string" || value.length === 0 || value.length > maxLength) {
      return fail(option, `must be a non-empty string of at most ${maxLength} characters`)
    }
    return Effect.succeed(value)
  })

export const fail = (option: string, reason: string) => Effect.fail(new InvalidOption({ option, reason }))

const safe = (value: unknown): string => {
  try {
    return String(JSON.stringify(value) ?? String(value)).slice(0, 100)
  } catch {
    return typeof value
  }
}
