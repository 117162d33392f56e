/**
 * The dead-letter store on the broker. RabbitMQ has no API to read a queue without consuming it
 * nor to move messages back, so every read is a scan: `basic.get` without ack on a private
 * channel, then the channel is closed, which requeues everything it still holds (in its original
 * position). Redrive publishes (confirmed) to the work queue and only then acks the DLQ copy.
 * Scans of one queue are serialised within this process.
 */
import type { Broker } from "@errand/core"
import type * as amqp from "amqplib"
import type { Client } from "./client.js"
import { sleep, withTimeout } from "./client.js"
import * as Topology from "./topology.js"

/** Header names carrying the `DeadLetterRecord` fields; the body is the record's body. */
export const headers = {
  reason: "x-errand-reason",
  error: "x-errand-error",
  attempts: "x-errand-attempts",
  failedAt: "x-errand-failed-at",
  group: "x-errand-group"
} as const

// amqplib refuses header tables over 64 KiB; keep the error text well below it.
const maxErrorLength = 8000

/** Headers for a dead-lettered message. */
export const recordHeaders = (record: Broker.DeadLetterRecord, group: unknown): Record<string, unknown> => ({
  [headers.reason]: record.reason,
  [headers.error]: record.error.length > maxErrorLength ? `${record.error.slice(0, maxErrorLength)}…` : record.error,
  [headers.attempts]: record.attempts,
  [headers.failedAt]: record.failedAt,
  ...(typeof group === "string" ? { [headers.group]: group } : {})
})

const asNumber = (value: unknown): number =>
  typeof value === "number" ? value : typeof value === "bigint" ? Number(value) : Number(value ?? 0)

const reasons = new Set<Broker.DeadLetterReason>(["exhausted", "unrecoverable", "undecodable"])

/** Read a dead-lettered message back into an entry. */
export const entryOf = (message: amqp.Message, fallbackId: string): Broker.DeadLetterEntry => {
  const table = message.properties.headers ?? {}
  const reason = table[headers.reason]
  return {
    id: typeof message.properties.messageId === "string" ? message.properties.messageId : fallbackId,
    body: message.content.toString("utf8"),
    reason:
      typeof reason === "string" && reasons.has(reason as Broker.DeadLetterReason)
        ? (reason as Broker.DeadLetterReason)
        : "exhausted",
    error: String(table[headers.error] ?? ""),
    attempts: asNumber(table[headers.attempts]),
    failedAt: asNumber(table[headers.failedAt])
  }
}

/** What to do with a scanned message. */
export type Decision = "keep" | "ack" | "stop"

/** The dead-letter store of one client. */
export class DeadLetters {
  private readonly locks = new Map<string, Promise<unknown>>()

  constructor(private readonly client: Client) {}

  /** Run `task` after every earlier task on `queue` finished. */
  exclusive<A>(queue: string, task: () => Promise<A>): Promise<A> {
    const previous = this.locks.get(queue) ?? Promise.resolve()
    const next = previous.catch(() => {}).then(task)
    this.locks.set(queue, next)
    void next
      .finally(() => {
        if (this.locks.get(queue) === next) this.locks.delete(queue)
      })
      .catch(() => {})
    return next
  }

  /** Visit the DLQ oldest first, at most once per message present when the scan started. */
  scan(
    queue: string,
    visit: (entry: Broker.DeadLetterEntry, index: number) => Decision | Promise<Decision>
  ): Promise<void> {
    return this.exclusive(queue, async () => {
      await this.client.ensureTopology(queue)
      const channel = await this.client.channel()
      const dlq = Topology.deadLetterQueue(queue)
      let total = 0
      let fetched = 0
      let held = 0
      try {
        total = (await channel.checkQueue(dlq)).messageCount
        // A quorum queue puts returned messages at its tail: a partial scan would rotate it, so
        // quorum scans always hold the whole queue before returning it (in order).
        const wholeQueue = this.client.options.settings.queueType === "quorum"
        let visiting = true
        for (let index = 0; index < total; index++) {
          const message = await channel.get(dlq, { noAck: false })
          if (message === false) break
          fetched++
          held++
          if (!visiting) continue
          const decision = await visit(entryOf(message, `${queue}~dlq#${index}`), index)
          if (decision === "ack") {
            channel.ack(message)
            held--
          }
          if (decision === "stop") {
            if (!wholeQueue) break
            visiting = false
          }
        }
        // Requeue what the scan holds, and wait until the queue shows it again: the broker applies
        // requeues asynchronously, and the next scan (or count) must not miss them.
        if (held > 0) {
          channel.nackAll(true)
          const expected = total - fetched + held
          const deadline = Date.now() + 5000
          while ((await channel.checkQueue(dlq)).messageCount < expected && Date.now() < deadline) await sleep(10)
        }
      } finally {
        // Closing requeues anything still held (after a failure), in its original position.
        await withTimeout(channel.close(), 5000, () => new Error("timeout")).catch(() => {})
      }
    })
  }

  /** Ready messages in the DLQ. */
  count(queue: string): Promise<number> {
    return this.exclusive(queue, async () => {
      await this.client.ensureTopology(queue)
      const channel = await this.client.adminChannel()
      return (await channel.checkQueue(Topology.deadLetterQueue(queue))).messageCount
    })
  }

  /** Drop every message of the DLQ; returns how many. */
  purgeAll(queue: string): Promise<number> {
    return this.exclusive(queue, async () => {
      await this.client.ensureTopology(queue)
      const channel = await this.client.adminChannel()
      return (await channel.purgeQueue(Topology.deadLetterQueue(queue))).messageCount
    })
  }
}
