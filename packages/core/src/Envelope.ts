/**
 * The versioned wire format every broker carries as an opaque body. It holds our own attempt
 * counter, so retry decisions never depend on a broker's delivery count.
 *
 * Decoding is hardened against hostile bodies: size cap before parse, depth cap, `__proto__`
 * and `constructor.prototype` keys rejected, unknown versions rejected.
 *
 * @since 0.1.0
 */
import { Effect, Schema } from "effect"
import { DecodeError } from "./Errors.js"

/**
 * The envelope version this library writes and reads.
 *
 * @since 0.1.0
 */
export const version = 1

/**
 * Library-wide cap on an encoded envelope, in bytes (the broker's own cap may be lower).
 *
 * @since 0.1.0
 */
export const maxBytes = 16 * 1024 * 1024

/**
 * Most attempts a job may have. Also bounds the work a hostile body can cause (backoff schedules
 * are replayed up to the attempt number).
 *
 * @since 0.1.0
 */
export const maxAttempts = 1000

/**
 * Deepest nesting accepted in a decoded body.
 *
 * @since 0.1.0
 */
export const maxDepth = 64

/**
 * Trace context carried from enqueue to processing.
 *
 * @since 0.1.0
 */
export const TraceContext = Schema.Struct({
  traceId: Schema.String,
  spanId: Schema.String
})

/**
 * The envelope schema (version 1).
 *
 * @since 0.1.0
 */
export const Envelope = Schema.Struct({
  v: Schema.Literal(1),
  id: Schema.String,
  job: Schema.String,
  payload: Schema.Unknown,
  /** Attempts already made and failed; the delivery carrying it is attempt `attempts + 1`. */
  attempts: Schema.Int,
  maxAttempts: Schema.Int,
  enqueuedAt: Schema.Number,
  /** Epoch ms before which the job must not run (core hops delays past the broker's maximum). */
  notBefore: Schema.optionalKey(Schema.Number),
  idempotencyKey: Schema.optionalKey(Schema.String),
  priority: Schema.Int,
  group: Schema.optionalKey(Schema.String),
  /** Per-job handler timeout in ms. */
  timeout: Schema.optionalKey(Schema.Number),
  trace: Schema.optionalKey(TraceContext)
})

/**
 * @since 0.1.0
 */
export type Envelope = typeof Envelope.Type

const isInt = (value: unknown): value is number => typeof value === "number" && Number.isInteger(value)
const isFiniteNumber = (value: unknown): value is number => typeof value === "number" && Number.isFinite(value)

// The hot path of every delivery: a hand-written check of exactly what the `Envelope` schema says
// (kept in step with it by the Envelope tests), about 20× cheaper than a schema decode.
const checkFields = (o: Record<string, unknown>): string | undefined => {
  if (typeof o.id !== "string" || o.id.length === 0) return "id must be a non-empty string"
  if (typeof o.job !== "string") return "job must be a string"
  if (!("payload" in o)) return "payload is missing"
  if (!isInt(o.attempts) || o.attempts < 0) return "attempts must be a non-negative integer"
  if (!isInt(o.maxAttempts) || o.maxAttempts < 1 || o.maxAttempts > maxAttempts) {
    return `maxAttempts must be an integer from 1 to ${maxAttempts}`
  }
  if ((o.attempts as number) > o.maxAttempts) return "attempts must not exceed maxAttempts"
  if (!isFiniteNumber(o.enqueuedAt)) return "enqueuedAt must be a number"
  if (!isInt(o.priority)) return "priority must be an integer"
  if (o.notBefore !== undefined && !isFiniteNumber(o.notBefore)) return "notBefore must be a number"
  if (o.idempotencyKey !== undefined && typeof o.idempotencyKey !== "string") return "idempotencyKey must be a string"
  if (o.group !== undefined && typeof o.group !== "string") return "group must be a string"
  if (o.timeout !== undefined && !isFiniteNumber(o.timeout)) return "timeout must be a number"
  if (o.trace !== undefined) {
    const trace = o.trace as Record<string, unknown> | null
    if (
      trace === null ||
      typeof trace !== "object" ||
      typeof trace.traceId !== "string" ||
      typeof trace.spanId !== "string"
    ) {
      return "trace must be { traceId, spanId }"
    }
  }
  return undefined
}

/**
 * Byte length of a string in UTF-8, without allocating a buffer.
 *
 * @since 0.1.0
 */
export const byteLength = (s: string): number => Buffer.byteLength(s, "utf8")

/**
 * Encode an envelope to its wire body.
 *
 * @since 0.1.0
 */
export const encode = (envelope: Envelope): string => JSON.stringify(envelope)

const tooDeep = () => new DecodeError({ reason: "TooDeep", message: `body is nested deeper than ${maxDepth} levels` })

// Recursive, but never deeper than `maxDepth` (it stops there), so a deep body cannot overflow the
// stack; and it allocates nothing per value (this runs on every delivery).
const checkShape = (value: unknown, depth: number): DecodeError | undefined => {
  if (value === null || typeof value !== "object") return undefined
  if (depth > maxDepth) return tooDeep()
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      const error = checkShape(value[i], depth + 1)
      if (error !== undefined) return error
    }
    return undefined
  }
  const keys = Object.keys(value)
  for (let i = 0; i < keys.length; i++) {
    const key = keys[i]!
    const child = (value as Record<string, unknown>)[key]
    if (key === "__proto__") {
      return new DecodeError({ reason: "ForbiddenKey", message: 'body contains a "__proto__" key' })
    }
    if (key === "constructor" && child !== null && typeof child === "object" && "prototype" in child) {
      return new DecodeError({ reason: "ForbiddenKey", message: 'body contains a "constructor.prototype" key' })
    }
    const error = checkShape(child, depth + 1)
    if (error !== undefined) return error
  }
  return undefined
}

/**
 * Parse a wire body into an envelope, or say exactly why it cannot be one (synchronous; the
 * worker's hot path).
 *
 * @since 0.1.0
 */
export const parse = (body: string, limit: number = maxBytes): Envelope | DecodeError => {
  if (typeof body !== "string") return new DecodeError({ reason: "NotJson", message: "body is not a string" })
  // length in UTF-16 units is at most the UTF-8 byte length, so this skips most of the work
  if (body.length > limit || byteLength(body) > limit) {
    return new DecodeError({ reason: "TooLarge", message: `body exceeds ${limit} bytes` })
  }
  let parsed: unknown
  try {
    parsed = JSON.parse(body)
  } catch {
    return new DecodeError({ reason: "NotJson", message: "body is not valid JSON" })
  }
  const shapeError = checkShape(parsed, 1)
  if (shapeError) return shapeError
  if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed)) {
    return new DecodeError({ reason: "InvalidEnvelope", message: "body is not a JSON object" })
  }
  const v = (parsed as { v?: unknown }).v
  if (v !== version) {
    return new DecodeError({
      reason: "UnknownVersion",
      message: `unknown envelope version ${String(JSON.stringify(v) ?? "undefined").slice(0, 100)}`
    })
  }
  const invalid = checkFields(parsed as Record<string, unknown>)
  if (invalid !== undefined)
    return new DecodeError({ reason: "InvalidEnvelope", message: `invalid envelope: ${invalid}` })
  return parsed as Envelope
}

/**
 * Parse a wire body into an envelope, failing with the reason it cannot be one.
 *
 * @since 0.1.0
 */
export const decode = (body: string, limit: number = maxBytes): Effect.Effect<Envelope, DecodeError> =>
  Effect.suspend(() => {
    const result = parse(body, limit)
    return result instanceof DecodeError ? Effect.fail(result) : Effect.succeed(result)
  })
