/**
 * The one place where SQS client errors become `BrokerError`s. Messages carry the error's name,
 * a sanitised and truncated service message, and the endpoint as host:port only: never a queue
 * URL, an access key id, a secret, a session token or a signature.
 */
import { Errors } from "@errand/core"

type Reason = Errors.BrokerError["reason"]

const throttled = new Set([
  "ThrottlingException",
  "Throttling",
  "RequestThrottled",
  "OverLimit",
  "KmsThrottled",
  "TooManyRequestsException",
  "RequestLimitExceeded",
  "SlowDown"
])

const unauthorized = new Set([
  "AccessDenied",
  "AccessDeniedException",
  "InvalidClientTokenId",
  "UnrecognizedClientException",
  "SignatureDoesNotMatch",
  "IncompleteSignature",
  "MissingAuthenticationToken",
  "ExpiredToken",
  "ExpiredTokenException",
  "InvalidSecurity",
  "KmsAccessDenied",
  "CredentialsProviderError",
  "NotAuthorized",
  "OptInRequired"
])

// message text of these is never shown: it can echo the canonical request or a key id
const secretBearing = new Set([
  "SignatureDoesNotMatch",
  "IncompleteSignature",
  "InvalidClientTokenId",
  "UnrecognizedClientException",
  "ExpiredToken",
  "ExpiredTokenException",
  "CredentialsProviderError"
])

const notFound = new Set([
  "QueueDoesNotExist",
  "AWS.SimpleQueueService.NonExistentQueue",
  "NonExistentQueue",
  "ResourceNotFoundException",
  "QueueDeletedRecently"
])

const timeouts = new Set(["TimeoutError", "RequestTimeout", "RequestTimeoutException", "AbortError"])

const connectionCodes = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "ENOTFOUND",
  "EAI_AGAIN",
  "EPIPE",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "ECONNABORTED",
  "ERR_SOCKET_CONNECTION_TIMEOUT"
])

interface ErrorLike {
  readonly name?: unknown
  readonly code?: unknown
  readonly message?: unknown
  readonly $fault?: unknown
  readonly $metadata?: { readonly httpStatusCode?: unknown } | undefined
}

const asErrorLike = (error: unknown): ErrorLike =>
  error !== null && typeof error === "object" ? (error as ErrorLike) : {}

/** The error's name as the SDK reports it (`QueueDoesNotExist`, `ThrottlingException`…). */
export const errorName = (error: unknown): string => {
  const e = asErrorLike(error)
  if (typeof e.name === "string" && e.name !== "Error" && e.name.length > 0) return e.name
  if (typeof e.code === "string") return e.code
  return typeof e.name === "string" ? e.name : "UnknownError"
}

const httpStatus = (error: unknown): number | undefined => {
  const status = asErrorLike(error).$metadata?.httpStatusCode
  return typeof status === "number" ? status : undefined
}

/** Whether the error says the queue does not exist. */
export const isQueueMissing = (error: unknown): boolean => notFound.has(errorName(error))

/** Whether the error says the receipt handle is no longer in flight (expired, deleted or re-received). */
export const isStaleReceipt = (error: unknown): boolean => {
  const name = errorName(error)
  if (name === "MessageNotInflight" || name === "ReceiptHandleIsInvalid") return true
  if (name === "InvalidParameterValue") {
    const message = asErrorLike(error).message
    return typeof message === "string" && /receipt handle/iu.test(message)
  }
  return false
}

/** Classify a native error. */
export const reasonOf = (error: unknown): Reason => {
  if (error instanceof Errors.BrokerError) return error.reason
  const name = errorName(error)
  const code = asErrorLike(error).code
  if (throttled.has(name)) return "Throttled"
  if (unauthorized.has(name)) return "Unauthorized"
  if (notFound.has(name)) return "NotFound"
  if (timeouts.has(name)) return "Timeout"
  if (typeof code === "string" && connectionCodes.has(code)) return "Connection"
  if (connectionCodes.has(name)) return "Connection"
  if (name === "BatchRequestTooLong") return "PayloadTooLarge"
  if (name === "InvalidParameterValue") {
    const message = asErrorLike(error).message
    if (typeof message === "string" && /shorter than|too long|maximum (message )?size/iu.test(message)) {
      return "PayloadTooLarge"
    }
  }
  const status = httpStatus(error)
  if (status === 429) return "Throttled"
  if (status === 401 || status === 403) return "Unauthorized"
  if (status !== undefined && status >= 500) return "Connection"
  return "Unknown"
}

const urlPattern = /\b[a-z][a-z0-9+.-]*:\/\/[^\s"'<>]+/giu
const accessKeyPattern = /\b(?:AKIA|ASIA|AIDA|AROA|ANPA|AGPA)[A-Z0-9]{12,}\b/gu
const credentialPattern =
  /(Credential|Signature|X-Amz-Security-Token|SessionToken|secretAccessKey|accessKeyId|token)\s*[=:]\s*[^\s,;&"']+/giu
const longSecretPattern = /\b[A-Za-z0-9/+=]{40,}\b/gu

/**
 * Remove what must never be shown from a free-text message: URLs become host:port, access key
 * ids, `Credential=…`/`Signature=…` pairs and long base64 runs (secrets, tokens) are masked.
 */
export const sanitize = (text: string): string =>
  text
    .replace(urlPattern, (url) => {
      try {
        return new URL(url).host
      } catch {
        return "<url>"
      }
    })
    .replace(credentialPattern, "$1=<redacted>")
    .replace(accessKeyPattern, "<redacted>")
    .replace(longSecretPattern, "<redacted>")
    .slice(0, 300)

/**
 * Turn any native error into a `BrokerError` for `operation`. `endpoint` is shown as host:port.
 */
export const toBrokerError =
  (operation: string, endpoint: string) =>
  (error: unknown): Errors.BrokerError => {
    if (error instanceof Errors.BrokerError) return error
    const name = errorName(error)
    const reason = reasonOf(error)
    const raw = asErrorLike(error).message
    const detail = secretBearing.has(name) || typeof raw !== "string" || raw.length === 0 ? "" : `: ${sanitize(raw)}`
    return new Errors.BrokerError({
      reason,
      operation,
      message: `SQS ${operation} failed at ${endpoint}: ${sanitize(name)}${detail}`
    })
  }

/** A `BrokerError` built by the adapter itself (already safe text). */
export const brokerError = (reason: Reason, operation: string, message: string): Errors.BrokerError =>
  new Errors.BrokerError({ reason, operation, message })

/**
 * Reason for one failed batch entry (`Failed[]` of a batch call). `senderFault: false` means SQS
 * could not do it this time and the entry may be retried.
 */
export const entryReason = (code: string | undefined, message: string | undefined, senderFault: boolean): Reason => {
  const name = code ?? "Unknown"
  if (throttled.has(name)) return "Throttled"
  if (name === "InvalidParameterValue" && message !== undefined && /shorter than|too long/iu.test(message)) {
    return "PayloadTooLarge"
  }
  if (name === "BatchRequestTooLong") return "PayloadTooLarge"
  return senderFault ? "Unknown" : "Connection"
}
