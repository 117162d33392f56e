/**
 * The one place where amqplib / socket / RabbitMQ failures become `BrokerError`s.
 * Messages name the endpoint as host:port only; anything that looks like a URL is scrubbed.
 */
import { Errors } from "@errand/core"

type Reason = Errors.BrokerErrorReason

/** Where we talk to, safe to show: `host:port`, never credentials or the full URL. */
export const endpointOf = (
  url:
    | string
    | {
        readonly hostname?: string | undefined
        readonly port?: number | undefined
        readonly protocol?: string | undefined
      }
): string => {
  if (typeof url !== "string") {
    const port = url.port ?? (url.protocol?.startsWith("amqps") ? 5671 : 5672)
    return `${url.hostname ?? "localhost"}:${port}`
  }
  try {
    const parsed = new URL(url)
    const port = parsed.port !== "" ? parsed.port : parsed.protocol === "amqps:" ? "5671" : "5672"
    return `${parsed.hostname}:${port}`
  } catch {
    return "<invalid AMQP URL>"
  }
}

/** Remove anything URL-like (which could carry user:password) from a native message. */
export const scrub = (text: string): string =>
  text
    .replace(/[a-z][a-z0-9+.-]*:\/\/\S*/giu, "<url>")
    .replace(/\b[^\s:@/]+:[^\s@/]+@/gu, "<credentials>@")
    .slice(0, 500)

const connectionCodes = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "ECONNABORTED",
  "EPIPE",
  "ETIMEDOUT",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "ENOTFOUND",
  "EAI_AGAIN"
])

/** A failure raised by this adapter itself (not by amqplib), carrying its reason. */
export class AdapterFailure extends Error {
  constructor(
    readonly reason: Reason,
    message: string
  ) {
    super(message)
    this.name = "AdapterFailure"
  }
}

const reasonOf = (cause: unknown): { readonly reason: Reason; readonly detail: string } => {
  if (cause instanceof Errors.BrokerError) return { reason: cause.reason, detail: cause.message }
  if (cause instanceof AdapterFailure) return { reason: cause.reason, detail: cause.message }
  const error = cause as { code?: unknown; message?: unknown; name?: unknown } | null | undefined
  const message = typeof error?.message === "string" ? error.message : String(cause)
  const code = error?.code
  if (typeof code === "string" && connectionCodes.has(code)) return { reason: "Connection", detail: code }
  if (/ACCESS[-_]REFUSED|\b403\b|authentication failure|Login was refused/iu.test(message)) {
    return { reason: "Unauthorized", detail: "access refused (check credentials, vhost and permissions)" }
  }
  if (/NOT[-_]FOUND|\b404\b/u.test(message) || code === 404) return { reason: "NotFound", detail: message }
  if (/larger than configured max size|message size/iu.test(message))
    return { reason: "PayloadTooLarge", detail: message }
  // A channel-level refusal (inequivalent arguments, unknown delivery tag…): a bug or a
  // misconfiguration, not something a retry fixes.
  if (
    /\b406\b|PRECONDITION[-_]FAILED|\b530\b|NOT[-_]ALLOWED|\b540\b|NOT[-_]IMPLEMENTED/u.test(message) ||
    code === 406
  ) {
    return { reason: "Unknown", detail: message }
  }
  if (
    error?.name === "IllegalOperationError" ||
    /channel (is )?closed|connection (is )?closed|channel ended|connection closed|socket closed|heartbeat timeout|CONNECTION[-_]FORCED|Unexpected close|Socket closed abruptly|write after end/iu.test(
      message
    ) ||
    code === 320
  ) {
    return { reason: "Connection", detail: message }
  }
  if (/timed? ?out/iu.test(message)) return { reason: "Timeout", detail: message }
  return { reason: "Unknown", detail: message }
}

/** Map any native failure of `operation` against `endpoint` (host:port) to a `BrokerError`. */
export const toBrokerError =
  (operation: string, endpoint: string) =>
  (cause: unknown): Errors.BrokerError => {
    if (cause instanceof Errors.BrokerError) return cause
    const { detail, reason } = reasonOf(cause)
    return new Errors.BrokerError({
      reason,
      operation,
      message: `RabbitMQ ${operation} on ${endpoint} failed: ${scrub(detail)}`
    })
  }

/** Whether a native failure is worth retrying once the connection is back. */
export const isConnectionFailure = (cause: unknown): boolean => reasonOf(cause).reason === "Connection"
