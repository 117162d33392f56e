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
