/**
 * Pure helpers for SQS batch calls: message size as SQS counts it, and splitting entries into
 * batches of at most 10 entries and at most a byte budget.
 */
import type { MessageAttributeValue } from "@aws-sdk/client-sqs"

/** Most entries SQS takes in one batch call. */
export const maxBatchEntries = 10

const utf8 = (text: string): number => Buffer.byteLength(text, "utf8")

/** Size of a message as SQS counts it against `MaximumMessageSize`: body plus every attribute's name, type and value. */
export const messageSize = (body: string, attributes: Record<string, MessageAttributeValue> | undefined): number => {
  let size = utf8(body)
  if (attributes !== undefined) {
    for (const [name, value] of Object.entries(attributes)) {
      size += utf8(name) + utf8(value.DataType ?? "")
      if (value.StringValue !== undefined) size += utf8(value.StringValue)
      if (value.BinaryValue !== undefined) size += value.BinaryValue.byteLength
    }
  }
  return size
}

/**
 * Split `sizes` (in input order) into batches of indexes: at most 10 each and at most `maxBytes`
 * in total. An entry larger than `maxBytes` gets a batch of its own (sent with a single call).
 */
export const chunk = (sizes: ReadonlyArray<number>, maxBytes: number): Array<Array<number>> => {
  const batches: Array<Array<number>> = []
  let current: Array<number> = []
  let bytes = 0
  sizes.forEach((size, index) => {
    if (current.length > 0 && (current.length >= maxBatchEntries || bytes + size > maxBytes)) {
      batches.push(current)
      current = []
      bytes = 0
    }
    current.push(index)
    bytes += size
  })
  if (current.length > 0) batches.push(current)
  return batches
}

// Characters SQS refuses in a message body (its allowed set is #x9 #xA #xD #x20-#xD7FF
// #xE000-#xFFFD #x10000-#x10FFFF): U+FFFE, U+FFFF, other control characters, lone surrogates.
const refused = /[^\t\n\r\u0020-\uD7FF\uE000-\uFFFD\u{10000}-\u{10FFFF}]/gu
// The same, plus every supplementary-plane character, for emulators that refuse those too.
const refusedOrSupplementary = /[^\t\n\r\u0020-\uD7FF\uE000-\uFFFD]/gu

const escapeUnits = (match: string): string => {
  let out = ""
  for (let i = 0; i < match.length; i++) out += `\\u${match.charCodeAt(i).toString(16).padStart(4, "0")}`
  return out
}

/**
 * The body as SQS accepts it: characters SQS refuses are written as JSON `\uXXXX` escapes (the
 * body is core's JSON envelope, so the decoded value is unchanged). With `escapeSupplementary`,
 * characters beyond U+FFFF are escaped too (fauxqs 1.9 refuses them, real SQS does not).
 */
export const safeBody = (body: string, escapeSupplementary: boolean): string => {
  const pattern = escapeSupplementary ? refusedOrSupplementary : refused
  pattern.lastIndex = 0
  if (!pattern.test(body)) return body
  pattern.lastIndex = 0
  return body.replace(pattern, escapeUnits)
}
