/**
 * SQS naming rules: queue names, dead-letter queue names, FIFO group and deduplication ids.
 */
import { createHash } from "node:crypto"

/** SQS's own limit on a queue name, `.fifo` included. */
export const maxQueueNameLength = 80

const fifoSuffix = ".fifo"

const shortHash = (text: string, length = 8): string => createHash("sha256").update(text).digest("hex").slice(0, length)

/** Whether the name has SQS's FIFO suffix. */
export const hasFifoSuffix = (queue: string): boolean => queue.endsWith(fifoSuffix)

/**
 * Why SQS (with this adapter's FIFO setting) refuses `queue`, or `undefined`.
 */
export const check = (queue: string, fifo: boolean): string | undefined => {
  if (queue.length === 0) return "must not be empty"
  if (queue.length > maxQueueNameLength) {
    return `SQS queue names are at most ${maxQueueNameLength} characters (got ${queue.length})`
  }
  const base = hasFifoSuffix(queue) ? queue.slice(0, -fifoSuffix.length) : queue
  if (fifo && !hasFifoSuffix(queue)) return 'a FIFO queue name must end with ".fifo"'
  if (!fifo && hasFifoSuffix(queue)) {
    return 'names ending with ".fifo" are FIFO queues: use a layer with `fifo: true` (capabilities differ)'
  }
  if (base.length === 0) return 'must have a name before ".fifo"'
  if (base.endsWith("-dlq")) return 'names ending with "-dlq" are reserved for the adapter\'s dead-letter queues'
  if (!/^[A-Za-z0-9_-]+$/u.test(base)) {
    return "SQS queue names may only contain letters, digits, '-' and '_' (plus the \".fifo\" suffix)"
  }
  return undefined
}

/**
 * The dead-letter queue's name: `<name>-dlq` or `<base>-dlq.fifo`. When that would pass 80
 * characters, the base is shortened and a hash of the full name keeps it unique.
 */
export const deadLetterQueueName = (queue: string): string => {
  const fifo = hasFifoSuffix(queue)
  const base = fifo ? queue.slice(0, -fifoSuffix.length) : queue
  const suffix = `-dlq${fifo ? fifoSuffix : ""}`
  if (base.length + suffix.length <= maxQueueNameLength) return `${base}${suffix}`
  const hash = shortHash(queue)
  const room = maxQueueNameLength - suffix.length - hash.length - 1
  return `${base.slice(0, room)}-${hash}${suffix}`
}

// SQS: up to 128 characters, alphanumerics and punctuation !"#$%&'()*+,-./:;<=>?@[\]^_`{|}~
const fifoIdPattern = /^[\x21-\x7e]{1,128}$/u

/**
 * A value usable as `MessageGroupId` / `MessageDeduplicationId`: the text itself when SQS accepts
 * it, else a SHA-256 of it (stable, so deduplication still works).
 */
export const fifoId = (text: string): string =>
  fifoIdPattern.test(text) ? text : `h-${createHash("sha256").update(text).digest("hex")}`
