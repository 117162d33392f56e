/**
 * The one place where ioredis failures become `BrokerError`s.
 *
 * @internal
 */
import { Errors } from "@errand/core"

type Reason = Errors.BrokerError["reason"]

const connectionCodes = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "ENOTFOUND",
  "EAI_AGAIN",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "EPIPE",
  "ECONNABORTED",
  "ERR_SOCKET_CLOSED"
])

const redactUrls = /\b(rediss?|redis\+sentinel|valkeys?):\/\/[^\s"'<>]*/giu
const redactUserInfo = /\/\/[^\s/@"'<>]+@/gu

/**
 * Strip anything that looks like a connection URL or user info from a message, so that no
 * password ever reaches an error, a log line or a span.
 */
export const sanitize = (message: string): string =>
  message.replace(redactUrls, "<redis-url>").replace(redactUserInfo, "//<redacted>@").slice(0, 500)

const messageOf = (error: unknown): string => {
  if (error instanceof Error) return error.message
  if (typeof error === "string") return error
  try {
    return String(error)
  } catch {
    return "unknown error"
  }
}

/** Messages that mean "not found"; clients with their own wording (BullMQ) pass another. */
export const defaultNotFound = /does not exist|not found/iu

const codeOf = (error: unknown): string | undefined => {
  if (typeof error === "object" && error !== null && "code" in error) {
    const code = (error as { code: unknown }).code
    return typeof code === "string" ? code : undefined
  }
  return undefined
}

/**
 * Classify a native failure by its code, name and message.
 */
export const reasonOf = (error: unknown, notFound: RegExp = defaultNotFound): Reason => {
  const code = codeOf(error)
  const message = messageOf(error)
  const name = error instanceof Error ? error.name : ""
  if (code === "ETIMEDOUT" || /command timed out|timed? ?out/iu.test(message)) return "Timeout"
  if (code !== undefined && connectionCodes.has(code)) return "Connection"
  if (/^(NOAUTH|WRONGPASS|NOPERM)\b/u.test(message) || /invalid password|authentication required/iu.test(message)) {
    return "Unauthorized"
  }
  if (
    name === "MaxRetriesPerRequestError" ||
    name === "ClusterAllFailedError" ||
    /stream isn't writeable|connection is closed|connection lost|socket closed|enableOfflineQueue|Reached the max retries/iu.test(
      message
    ) ||
    /^(LOADING|READONLY|MASTERDOWN|CLUSTERDOWN|TRYAGAIN|BUSY)\b/u.test(message)
  ) {
    return "Connection"
  }
  if (/^OOM\b/u.test(message)) return "Throttled"
  if (notFound.test(message)) {
    return "NotFound"
  }
  if (
    /^ERR Protocol error: invalid bulk length|proto-max-bulk-len|string exceeds maximum allowed size/iu.test(message)
  ) {
    return "PayloadTooLarge"
  }
  return "Unknown"
}

/**
 * Map any ioredis failure to a `BrokerError`. `endpoint` is `host:port` only.
 *
 * @example
 * ```ts
 * Effect.tryPromise({ try: () => redis.get(key), catch: (e) => toBrokerError(e, "send", "127.0.0.1:6379") })
 * ```
 */
export const toBrokerError = (
  error: unknown,
  operation: string,
  endpoint: string,
  notFound: RegExp = defaultNotFound
): Errors.BrokerError => {
  if (error instanceof Errors.BrokerError) return error
  const reason = reasonOf(error, notFound)
  const code = codeOf(error)
  const detail = sanitize(messageOf(error))
  return new Errors.BrokerError({
    reason,
    operation,
    message: `Redis ${endpoint}: ${operation} failed (${reason}${code ? `, ${code}` : ""}): ${detail}`
  })
}
