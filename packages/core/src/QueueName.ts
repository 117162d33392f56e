/**
 * Queue name rules shared by every broker. Adapters add their own through
 * `Broker.validateQueueName` (SQS FIFO's `.fifo` suffix…).
 *
 * @since 0.1.0
 */
import { Effect } from "effect"
import { InvalidQueueName } from "./Errors.js"

/**
 * Longest queue name accepted: SQS allows 80 characters, and the others more.
 *
 * @since 0.1.0
 */
export const maxLength = 80

const forbidden = /[:{}*?[\]\s]/u

/**
 * Why `name` is not a valid queue name, or `undefined` when it is.
 *
 * @since 0.1.0
 */
export const check = (name: string): string | undefined => {
  if (typeof name !== "string" || name.length === 0) return "must not be empty"
  if (name.length > maxLength) return `must be at most ${maxLength} characters (got ${name.length})`
  if (forbidden.test(name)) return "must not contain ':', '{', '}', '*', '?', '[', ']' or whitespace"
  if (name.startsWith("amq.")) return "the 'amq.' prefix is reserved by AMQP"
  if (!/^[A-Za-z0-9_.-]+$/u.test(name)) return "may only contain letters, digits, '-', '_' and '.'"
  return undefined
}

/**
 * Validate a queue name, failing with `InvalidQueueName`.
 *
 * @since 0.1.0
 */
export const validate = (name: string): Effect.Effect<string, InvalidQueueName> => {
  const reason = check(name)
  return reason === undefined
    ? Effect.succeed(name)
    : Effect.fail(new InvalidQueueName({ queue: String(name), reason }))
}

/**
 * Validate a key prefix (BullMQ, Redis): the queue rules, except that the whole prefix may be
 * wrapped in one Redis Cluster hash tag, `{errand}`, so that a queue's keys share one slot.
 *
 * @since 0.1.0
 */
export const checkPrefix = (prefix: string): string | undefined => {
  const tagged = /^\{([^{}]+)\}$/u.exec(prefix)
  return check(tagged ? tagged[1]! : prefix)
}
