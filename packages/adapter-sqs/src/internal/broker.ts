/**
 * The SQS implementation of core's broker contract. Exposed through `SqsBroker`.
 */
import {
  ChangeMessageVisibilityBatchCommand,
  ChangeMessageVisibilityCommand,
  CreateQueueCommand,
  DeleteMessageBatchCommand,
  DeleteQueueCommand,
  GetQueueAttributesCommand,
  GetQueueUrlCommand,
  type Message,
  type MessageAttributeValue,
  type MessageSystemAttributeName,
  type QueueAttributeName,
  ReceiveMessageCommand,
  SendMessageBatchCommand,
  SendMessageCommand,
  type SQSClient
} from "@aws-sdk/client-sqs"
import { type Broker, Envelope, type Errors } from "@errand/core"
import { type Context, Effect, Exit, Option, Semaphore } from "effect"
import { chunk, maxBatchEntries, messageSize, safeBody } from "./batch.js"
import { brokerError, entryReason, isQueueMissing, isStaleReceipt, reasonOf, toBrokerError } from "./errors.js"
import { check, deadLetterQueueName, fifoId } from "./names.js"

type BrokerError = Errors.BrokerError

/** Resolved settings the implementation runs with. */
export interface Settings {
  readonly client: SQSClient
  /** The client for long polls (sent with an abort signal); may be `client` itself. */
  readonly pollClient: SQSClient
  /** host:port shown in errors. */
  readonly endpointLabel: string
  readonly fifo: boolean
  readonly createQueues: boolean
  readonly redrivePolicy: { readonly maxReceiveCount: number } | undefined
  readonly maxMessageBytes: number
  readonly maxBatchBytes: number
  readonly sendConcurrency: number
  readonly entryAttempts: number
  readonly deleteBatchWindow: number
  readonly scanVisibilitySeconds: number
  readonly queueAttributes: Readonly<Record<string, string>>
  readonly escapeSupplementary: boolean
}

/** Bytes kept free in every message for the attributes this adapter adds (job id…). */
export const attributeReserve = 1024

/** Longest `DelaySeconds` SQS accepts. */
export const maxDelaySeconds = 900

/** Most `ReceiveMessage` calls one `take` runs at once (10 messages each). */
const maxParallelPolls = 10

/** Longest visibility timeout SQS accepts (12 hours). */
export const maxVisibilitySeconds = 43_200

/** The capabilities of a layer, by queue type. */
export const capabilitiesFor = (fifo: boolean, maxMessageBytes: number): Broker.Capabilities => ({
  maxDelay: fifo ? 0 : maxDelaySeconds * 1000,
  priorities: false,
  ordering: fifo ? "per-group" : "none",
  deduplication: fifo,
  leaseExtension: true,
  maxPayloadBytes: maxMessageBytes - attributeReserve,
  persistent: true
})

const attr = {
  id: "errand-id",
  reason: "errand-reason",
  error: "errand-error",
  attempts: "errand-attempts",
  failedAt: "errand-failed-at",
  source: "errand-source-id"
} as const

const dedupWindowMs = 5 * 60 * 1000

/** What the adapter knows about one resolved queue. */
interface QueueInfo {
  readonly name: string
  readonly url: string
  readonly fifo: boolean
  readonly maxMessageBytes: number
  readonly retentionSeconds: number
}

interface OutEntry {
  readonly body: string
  /** Absent when the body carries the job id (see `idAttributes`). */
  readonly attributes: Record<string, MessageAttributeValue> | undefined
  readonly delaySeconds?: number | undefined
  readonly groupId?: string | undefined
  readonly dedupId?: string | undefined
}

interface SentEntry {
  readonly messageId: string
  readonly sequenceNumber?: string | undefined
}

const stringAttribute = (value: string): MessageAttributeValue => ({ DataType: "String", StringValue: value })
const numberAttribute = (value: number): MessageAttributeValue => ({ DataType: "Number", StringValue: String(value) })

// Core's envelope is JSON that starts with its version and the job id. Where the body says the id
// there, the id needs no message attribute (an attribute costs serialisation, bytes and parsing on
// every send and receive); any other body carries it as the `errand-id` attribute, as before.
const envelopeStart = '{"v":1,"id":"'
/** Printable ASCII without `"` and a backslash: written as is in JSON, never escaped by `safeBody`. */
const isPlainId = (id: string): boolean => {
  if (id.length === 0 || id.length > 512) return false
  for (let i = 0; i < id.length; i++) {
    const c = id.charCodeAt(i)
    if (c < 0x21 || c > 0x7e || c === 0x22 || c === 0x5c) return false
  }
  return true
}

/** The job id written at the start of core's envelope, or `undefined` when the body does not start so. */
export const idInBody = (body: string): string | undefined => {
  if (!body.startsWith(envelopeStart)) return undefined
  const end = body.indexOf('"', envelopeStart.length)
  if (end <= envelopeStart.length) return undefined
  const id = body.slice(envelopeStart.length, end)
  return id.includes("\\") ? undefined : id
}

/** The message attributes that carry job `id` with `body`: none when the body itself says it. */
export const idAttributes = (body: string, id: string): Record<string, MessageAttributeValue> | undefined =>
  body.startsWith(envelopeStart) &&
  body.charCodeAt(envelopeStart.length + id.length) === 34 && // the closing `"`
  body.startsWith(id, envelopeStart.length) &&
  isPlainId(id)
    ? undefined
    : { [attr.id]: stringAttribute(id) }

const asCause = (cause: unknown): unknown => cause

const seconds = (ms: number, max: number): number =>
  Math.min(max, Math.max(0, Math.ceil((Number.isFinite(ms) ? ms : max * 1000) / 1000)))

const backoff = (attempt: number) => Effect.sleep(Math.min(2000, 50 * 2 ** attempt))

const truncateUtf8 = (text: string, maxBytes: number): string => {
  if (Buffer.byteLength(text, "utf8") <= maxBytes) return text
  let end = Math.min(text.length, maxBytes)
  while (end > 0 && Buffer.byteLength(text.slice(0, end), "utf8") > maxBytes - 3) end--
  return `${text.slice(0, end)}...`
}

/** Build the broker. The caller owns the client's lifetime. */
export const make = (settings: Settings): Broker.BrokerShape => {
  const { client, endpointLabel } = settings
  const capabilities = capabilitiesFor(settings.fifo, settings.maxMessageBytes)

  // ---------------------------------------------------------------- calls

  // No abort signal: the SDK then reuses its resolved middleware stack (`cacheMiddleware`) and no
  // AbortController is made per call. An interrupted call still finishes in the background, with
  // the same at-least-once outcome as an aborted request that SQS may already have applied.
  const call = <A>(operation: string, run: () => Promise<A>): Effect.Effect<A, unknown> =>
    Effect.tryPromise({ try: run, catch: asCause })

  /** A call aborted on interruption: long polls, which would otherwise stay in flight. */
  const callAbortable = <A>(operation: string, run: (signal: AbortSignal) => Promise<A>): Effect.Effect<A, unknown> =>
    Effect.tryPromise({ try: run, catch: asCause })

  const mapped = (operation: string) => Effect.mapError(toBrokerError(operation, endpointLabel))

  // ---------------------------------------------------------------- queues

  const queues = new Map<string, QueueInfo>()

  const queueAttributeNames: Array<QueueAttributeName> = ["MaximumMessageSize", "MessageRetentionPeriod", "FifoQueue"]

  const describe = (name: string, url: string) =>
    call("GetQueueAttributes", () =>
      client.send(new GetQueueAttributesCommand({ QueueUrl: url, AttributeNames: queueAttributeNames }))
    ).pipe(
      Effect.map((out): QueueInfo => {
        const attributes = out.Attributes ?? {}
        const max = Number(attributes.MaximumMessageSize ?? 262_144)
        return {
          name,
          url,
          fifo: attributes.FifoQueue === "true" || name.endsWith(".fifo"),
          maxMessageBytes: Number.isFinite(max) && max > 0 ? max : 262_144,
          retentionSeconds: Number(attributes.MessageRetentionPeriod ?? 345_600)
        }
      })
    )

  const lookup = (name: string) =>
    call("GetQueueUrl", () => client.send(new GetQueueUrlCommand({ QueueName: name }))).pipe(
      Effect.map((out) => out.QueueUrl),
      Effect.catchIf(isQueueMissing, () => Effect.succeed(undefined))
    )

  const baseAttributes = (): Record<string, string> => ({
    VisibilityTimeout: "30",
    MessageRetentionPeriod: "1209600",
    MaximumMessageSize: String(settings.maxMessageBytes),
    ...(settings.fifo ? { FifoQueue: "true", ContentBasedDeduplication: "false" } : {}),
    ...settings.queueAttributes
  })

  const createRaw = (name: string, attributes: Record<string, string>) =>
    call("CreateQueue", () => client.send(new CreateQueueCommand({ QueueName: name, Attributes: attributes }))).pipe(
      Effect.flatMap((out) =>
        out.QueueUrl === undefined
          ? Effect.fail(new Error("CreateQueue returned no QueueUrl"))
          : Effect.succeed(out.QueueUrl)
      )
    )

  const resolveRaw = (name: string, create: boolean, dead: boolean): Effect.Effect<QueueInfo | undefined, unknown> =>
    Effect.suspend(() => {
      const cached = queues.get(name)
      if (cached !== undefined) return Effect.succeed(cached)
      return Effect.gen(function* () {
        let url = yield* lookup(name)
        if (url === undefined) {
          if (!create) return undefined
          const attributes = baseAttributes()
          // a fresh main queue: do not trust a cached dead-letter queue (it may have been deleted with it)
          if (!dead) queues.delete(deadLetterQueueName(name))
          if (!dead && settings.redrivePolicy !== undefined) {
            const dlq = yield* resolveRaw(deadLetterQueueName(name), true, true)
            const arn = yield* call("GetQueueAttributes", () =>
              client.send(new GetQueueAttributesCommand({ QueueUrl: dlq!.url, AttributeNames: ["QueueArn"] }))
            )
            attributes.RedrivePolicy = JSON.stringify({
              deadLetterTargetArn: arn.Attributes?.QueueArn,
              maxReceiveCount: settings.redrivePolicy.maxReceiveCount
            })
          } else if (!dead) {
            // the dead-letter queue exists from the start, so `deadLetter` needs no creation on a hot path
            yield* resolveRaw(deadLetterQueueName(name), true, true)
          }
          url = yield* createRaw(name, attributes)
        }
        const info = yield* describe(name, url)
        queues.set(name, info)
        return info
      })
    })

  const resolve = (operation: string, name: string, create: boolean) =>
    resolveRaw(name, create && settings.createQueues, false).pipe(mapped(operation))

  const resolveExisting = (operation: string, name: string) =>
    resolve(operation, name, true).pipe(
      Effect.flatMap((info) =>
        info === undefined
          ? Effect.fail(brokerError("NotFound", operation, `SQS queue ${name} does not exist (createQueues is off)`))
          : Effect.succeed(info)
      )
    )

  const resolveDeadLetter = (operation: string, queue: string, create: boolean) =>
    resolveRaw(deadLetterQueueName(queue), create && settings.createQueues, true).pipe(mapped(operation))

  /** Forget a queue whose URL stopped working (deleted behind our back), so the next call resolves it again. */
  const forgetOnMissing =
    <A, E>(name: string) =>
    (effect: Effect.Effect<A, E>) =>
      Effect.tapError(effect, (error) =>
        Effect.sync(() => {
          if (
            isQueueMissing(error) ||
            (typeof error === "object" && error !== null && reasonOf(error) === "NotFound")
          ) {
            queues.delete(name)
          }
        })
      )

  // ---------------------------------------------------------------- receipt handles

  // The latest receipt handle per message: SQS only honours the most recent one. One map per
  // queue URL, keyed by message id (strings SQS gave us, so no key is built per lookup).
  const handles = new Map<string, Map<string, string>>()
  const maxHandles = 100_000
  const handlesOf = (url: string) => {
    let map = handles.get(url)
    if (map === undefined) {
      map = new Map()
      handles.set(url, map)
    }
    return map
  }
  const latestHandle = (url: string, messageId: string, fallback: string) =>
    handles.get(url)?.get(messageId) ?? fallback
  const rememberHandle = (url: string, messageId: string, receiptHandle: string) => {
    const map = handlesOf(url)
    map.delete(messageId) // re-insert at the end: the map stays in receive order
    map.set(messageId, receiptHandle)
    // messages settled elsewhere never come back to clear their entry: drop the oldest
    if (map.size > maxHandles) {
      const oldest = map.keys().next()
      if (oldest.done !== true) map.delete(oldest.value)
    }
  }
  const deleteHandle = (url: string, messageId: string) => {
    handles.get(url)?.delete(messageId)
  }
  /** Forget a handle once its delivery gave the message back (it is no longer ours to delete). */
  const forgetHandle = (url: string, messageId: string, receiptHandle: string) => {
    const map = handles.get(url)
    if (map !== undefined && map.get(messageId) === receiptHandle) map.delete(messageId)
  }

  // ---------------------------------------------------------------- deletes

  const deleteBatch = (
    url: string,
    items: ReadonlyArray<{ readonly messageId: string; readonly receiptHandle: string }>
  ): Effect.Effect<Array<BrokerError | undefined>, never> =>
    Effect.gen(function* () {
      const outcome: Array<BrokerError | undefined> = items.map(() => undefined)
      let pending = items.map((_, index) => index)
      for (let attempt = 0; pending.length > 0; attempt++) {
        const last = attempt + 1 >= settings.entryAttempts
        const sent = pending
        const result = yield* call("DeleteMessageBatch", () =>
          client.send(
            new DeleteMessageBatchCommand({
              QueueUrl: url,
              Entries: sent.map((index, position) => ({
                Id: String(position),
                ReceiptHandle: latestHandle(url, items[index]!.messageId, items[index]!.receiptHandle)
              }))
            })
          )
        ).pipe(Effect.result)
        if (result._tag === "Failure") {
          const error = toBrokerError("DeleteMessageBatch", endpointLabel)(result.failure)
          if (last || !error.isRetryable) {
            for (const index of sent) outcome[index] = error
            return outcome
          }
          yield* backoff(attempt)
          continue
        }
        const succeeded = new Set((result.success.Successful ?? []).map((entry) => entry.Id))
        const failed = new Map((result.success.Failed ?? []).map((entry) => [entry.Id, entry]))
        pending = []
        sent.forEach((index, position) => {
          const id = String(position)
          if (succeeded.has(id)) {
            deleteHandle(url, items[index]!.messageId)
            return
          }
          // not reported as deleted: never count it as done; retried with the latest receipt handle
          const entry = failed.get(id)
          if (last) {
            outcome[index] = brokerError(
              entryReason(entry?.Code, entry?.Message, entry?.SenderFault ?? false),
              "DeleteMessageBatch",
              `SQS DeleteMessageBatch entry failed at ${endpointLabel}: ${entry?.Code ?? "no result for entry"}`
            )
          } else {
            pending.push(index)
          }
        })
        if (pending.length > 0) yield* backoff(attempt)
      }
      return outcome
    })

  // Acks share `DeleteMessageBatch` calls through a small batcher of our own: per queue, deletes
  // wait one window (or one tick with a window of 0) or until 10 are pending, then one call runs
  // and each caller is resumed with its own entry's outcome. Effect's request batching did the
  // same at several times the CPU cost per ack.
  interface PendingDelete {
    readonly messageId: string
    readonly receiptHandle: string
    /** The contract call (ack, retry…) named in a failure. */
    readonly operation: string
    readonly resume: (effect: Effect.Effect<void, BrokerError>) => void
  }
  interface OpenBatch {
    readonly items: Array<PendingDelete>
    /** The first caller's services: the call runs with them (clock, tracer, logger). */
    readonly context: Context.Context<never>
    timer: ReturnType<typeof setTimeout> | ReturnType<typeof setImmediate> | undefined
  }
  const openBatches = new Map<string, OpenBatch>()

  const flushDeletes = (url: string, batch: OpenBatch) => {
    if (openBatches.get(url) === batch) openBatches.delete(url)
    if (batch.timer !== undefined) {
      if (settings.deleteBatchWindow > 0) clearTimeout(batch.timer as ReturnType<typeof setTimeout>)
      else clearImmediate(batch.timer as ReturnType<typeof setImmediate>)
      batch.timer = undefined
    }
    const items = batch.items
    Effect.runCallbackWith(batch.context)(deleteBatch(url, items), {
      onExit: (exit) => {
        if (Exit.isSuccess(exit)) {
          const outcome = exit.value
          for (let i = 0; i < items.length; i++) {
            const item = items[i]!
            const error = outcome[i]
            item.resume(
              error === undefined ? Effect.void : Effect.fail(brokerError(error.reason, item.operation, error.message))
            )
          }
        } else {
          // deleteBatch cannot fail: a defect or an interruption reaches every caller as it is
          for (const item of items) item.resume(Effect.failCause(exit.cause))
        }
      }
    })
  }

  /** Delete one message; concurrent deletes on one queue share `DeleteMessageBatch` calls. */
  const deleteMessage = (
    url: string,
    messageId: string,
    receiptHandle: string,
    operation: string
  ): Effect.Effect<void, BrokerError> =>
    Effect.withFiber((fiber) =>
      Effect.callback<void, BrokerError>((resume) => {
        let batch = openBatches.get(url)
        if (batch === undefined) {
          batch = { items: [], context: fiber.context as Context.Context<never>, timer: undefined }
          openBatches.set(url, batch)
          const open = batch
          batch.timer =
            settings.deleteBatchWindow > 0
              ? setTimeout(() => flushDeletes(url, open), settings.deleteBatchWindow)
              : setImmediate(() => flushDeletes(url, open))
        }
        batch.items.push({ messageId, receiptHandle, operation, resume })
        if (batch.items.length >= maxBatchEntries) flushDeletes(url, batch)
      })
    )

  const deleteMany = (
    url: string,
    items: ReadonlyArray<{ readonly messageId: string; readonly receiptHandle: string }>
  ) =>
    Effect.forEach(
      chunk(
        items.map(() => 1),
        maxBatchEntries
      ),
      (indexes) =>
        deleteBatch(
          url,
          indexes.map((index) => items[index]!)
        ),
      { concurrency: settings.sendConcurrency }
    ).pipe(Effect.map((parts) => parts.flat()))

  // ---------------------------------------------------------------- sends

  /**
   * A send call's native failure as a `BrokerError` for `operation` (the contract call: send,
   * retry, deadLetter…; the message names the SQS call). A missing queue is forgotten, so the
   * next call resolves it again.
   */
  const sendFailure = (info: QueueInfo, sqsOperation: string, operation: string) => (cause: unknown) => {
    const error = toBrokerError(sqsOperation, endpointLabel)(cause)
    if (error.reason === "NotFound") queues.delete(info.name)
    return error.operation === operation ? error : brokerError(error.reason, operation, error.message)
  }

  const sendOne = (info: QueueInfo, entry: OutEntry, operation: string): Effect.Effect<SentEntry, BrokerError> =>
    Effect.tryPromise({
      // method syntax: no function object named per call
      try() {
        return client.send(
          new SendMessageCommand({
            QueueUrl: info.url,
            MessageBody: entry.body,
            ...(entry.attributes !== undefined ? { MessageAttributes: entry.attributes } : {}),
            ...(entry.delaySeconds !== undefined && entry.delaySeconds > 0 ? { DelaySeconds: entry.delaySeconds } : {}),
            ...(entry.groupId !== undefined ? { MessageGroupId: entry.groupId } : {}),
            ...(entry.dedupId !== undefined ? { MessageDeduplicationId: entry.dedupId } : {})
          })
        )
      },
      catch: sendFailure(info, "SendMessage", operation)
    }).pipe(Effect.map((out): SentEntry => ({ messageId: out.MessageId ?? "", sequenceNumber: out.SequenceNumber })))

  /**
   * One `SendMessageBatch` of the entries at `sent` (positions in `entries`), filling `results`.
   * Entries SQS reports as failed without a sender fault (or throttled) are sent again, alone, up
   * to `entryAttempts` in all. (A function of `make`, not a closure per call: it runs per batch.)
   */
  function sendBatchAttempt(
    info: QueueInfo,
    entries: ReadonlyArray<OutEntry>,
    operation: string,
    results: Array<SentEntry | undefined>,
    sent: ReadonlyArray<number>,
    count: number
  ): Effect.Effect<Array<SentEntry>, BrokerError> {
    return Effect.flatMap(
      Effect.tryPromise({
        try() {
          return client.send(
            new SendMessageBatchCommand({
              QueueUrl: info.url,
              Entries: sent.map((index, position) => {
                const entry = entries[index]!
                return {
                  Id: String(position),
                  MessageBody: entry.body,
                  ...(entry.attributes !== undefined ? { MessageAttributes: entry.attributes } : {}),
                  ...(entry.delaySeconds !== undefined && entry.delaySeconds > 0
                    ? { DelaySeconds: entry.delaySeconds }
                    : {}),
                  ...(entry.groupId !== undefined ? { MessageGroupId: entry.groupId } : {}),
                  ...(entry.dedupId !== undefined ? { MessageDeduplicationId: entry.dedupId } : {})
                }
              })
            })
          )
        },
        catch: sendFailure(info, "SendMessageBatch", operation)
      }),
      (out) => {
        const last = count + 1 >= settings.entryAttempts
        const successful = out.Successful ?? []
        for (const ok of successful) {
          const index = sent[Number(ok.Id)]
          if (index !== undefined) {
            results[index] = { messageId: ok.MessageId ?? "", sequenceNumber: ok.SequenceNumber }
          }
        }
        // the common case: every entry accepted
        if (successful.length === sent.length && (out.Failed === undefined || out.Failed.length === 0)) {
          let complete = true
          for (const index of sent) if (results[index] === undefined) complete = false
          if (complete) return Effect.succeed(results as Array<SentEntry>)
        }
        const failed = new Map((out.Failed ?? []).map((entry) => [entry.Id, entry]))
        const pending: Array<number> = []
        for (const [position, index] of sent.entries()) {
          if (results[index] !== undefined) continue
          const entry = failed.get(String(position))
          const senderFault = entry?.SenderFault ?? false
          const reason = entryReason(entry?.Code, entry?.Message, senderFault)
          // SenderFault true: the request itself is wrong and would fail again
          if (last || (senderFault && reason !== "Throttled")) {
            return Effect.fail(
              brokerError(
                reason,
                operation,
                `SQS SendMessageBatch entry failed at ${endpointLabel}: ${entry?.Code ?? "no result for entry"}${
                  senderFault ? " (sender fault)" : ""
                }`
              )
            )
          }
          pending.push(index)
        }
        return pending.length === 0
          ? Effect.succeed(results as Array<SentEntry>)
          : Effect.andThen(backoff(count), sendBatchAttempt(info, entries, operation, results, pending, count + 1))
      }
    )
  }

  /** Send the entries at `indexes` in one call; results in their order. */
  function sendIndexes(
    info: QueueInfo,
    entries: ReadonlyArray<OutEntry>,
    indexes: ReadonlyArray<number>,
    operation: string
  ): Effect.Effect<ReadonlyArray<SentEntry>, BrokerError> {
    // a lone message (every single enqueue, retry and dead letter) goes through SendMessage: the
    // same guarantees (an answer is an acceptance; the SDK retries throttling and 5xx), a lighter
    // call than a batch of one. So does a message over the batch budget.
    if (indexes.length === 1) {
      return Effect.map(sendOne(info, entries[indexes[0]!]!, operation), (result) => [result])
    }
    const batch = indexes.length === entries.length ? entries : indexes.map((index) => entries[index]!)
    return sendBatchAttempt(
      info,
      batch,
      operation,
      new Array(batch.length),
      batch.map((_, index) => index),
      0
    )
  }

  /**
   * Send entries: batches of ≤ 10 and ≤ the byte budget, run concurrently (bounded). Results in
   * input order. Plain code up to the calls: it runs once per send, and a single send is common.
   */
  const sendEntries = (
    info: QueueInfo,
    given: ReadonlyArray<OutEntry>,
    operation: string
  ): Effect.Effect<ReadonlyArray<SentEntry>, BrokerError> => {
    const escapeSupplementary = settings.escapeSupplementary
    // copied only where something had to be escaped
    const entries = given.map((entry): OutEntry => {
      const body = safeBody(entry.body, escapeSupplementary)
      const original = entry.attributes
      let copied: Record<string, MessageAttributeValue> | undefined
      if (original !== undefined) {
        for (const name in original) {
          const value = original[name]!
          if (value.StringValue === undefined) continue
          const text = safeBody(value.StringValue, escapeSupplementary)
          if (text === value.StringValue) continue
          copied ??= { ...original }
          copied[name] = { ...value, StringValue: text }
        }
      }
      return body === entry.body && copied === undefined ? entry : { ...entry, body, attributes: copied ?? original }
    })
    const sizes = entries.map((entry) => messageSize(entry.body, entry.attributes))
    for (const size of sizes) {
      if (size > info.maxMessageBytes) {
        return Effect.fail(
          brokerError(
            "PayloadTooLarge",
            operation,
            `message of ${size} bytes (body and attributes) exceeds the queue's MaximumMessageSize of ${info.maxMessageBytes} bytes`
          )
        )
      }
    }
    const batches = chunk(sizes, settings.maxBatchBytes)
    // one batch (every single send): no fan-out machinery
    if (batches.length === 1) return sendIndexes(info, entries, batches[0]!, operation)
    // FIFO: a group spread over several batches must be sent batch after batch to keep its order
    let concurrency = settings.sendConcurrency
    if (info.fifo) {
      const batchOfGroup = new Map<string | undefined, number>()
      batches.forEach((indexes, batch) => {
        for (const index of indexes) {
          const group = entries[index]!.groupId
          const previous = batchOfGroup.get(group)
          if (previous !== undefined && previous !== batch) concurrency = 1
          batchOfGroup.set(group, batch)
        }
      })
    }
    return Effect.map(
      Effect.forEach(batches, (indexes) => sendIndexes(info, entries, indexes, operation), { concurrency }),
      (parts) => {
        const results: Array<SentEntry> = new Array(entries.length)
        batches.forEach((indexes, batch) =>
          indexes.forEach((index, position) => (results[index] = parts[batch]![position]!))
        )
        return results
      }
    )
  }

  // FIFO duplicate detection: SQS accepts a duplicate silently and answers with the first message's
  // id, so a repeated (dedup id → message id) pair seen within the 5-minute window is a duplicate.
  const seen = new Map<string, { readonly messageId: string; readonly at: number }>()
  const isDuplicate = (url: string, dedupId: string, messageId: string, now: number): boolean => {
    const key = `${url}\n${dedupId}`
    const previous = seen.get(key)
    if (previous !== undefined && previous.at + dedupWindowMs > now && previous.messageId === messageId) return true
    if (seen.size > 50_000) {
      for (const [k, v] of seen) if (v.at + dedupWindowMs <= now) seen.delete(k)
    }
    seen.set(key, { messageId, at: now })
    return false
  }

  /** Build the entries and send them to a resolved queue. */
  const sendTo = (
    info: QueueInfo,
    messages: ReadonlyArray<Broker.OutgoingMessage>
  ): Effect.Effect<ReadonlyArray<Broker.SendResult>, BrokerError> => {
    const entries: Array<OutEntry> = new Array(messages.length)
    for (let i = 0; i < messages.length; i++) {
      const message = messages[i]!
      if (info.fifo && message.delay > 0) {
        return Effect.fail(
          brokerError("Unknown", "send", "SQS FIFO queues take no per-message delay (capabilities.maxDelay is 0)")
        )
      }
      entries[i] = {
        body: message.body,
        attributes: idAttributes(message.body, message.id),
        ...(info.fifo
          ? { groupId: fifoId(message.group ?? message.id), dedupId: fifoId(message.id) }
          : { delaySeconds: seconds(message.delay, maxDelaySeconds) })
      }
    }
    return Effect.map(sendEntries(info, entries, "send"), (sent) => {
      const now = Date.now()
      return messages.map(
        (message, index): Broker.SendResult =>
          info.fifo && isDuplicate(info.url, entries[index]!.dedupId!, sent[index]!.messageId, now)
            ? { id: message.id, duplicate: true }
            : { id: message.id, duplicate: false }
      )
    })
  }

  const sendOnce: Broker.BrokerShape["send"] = (queue, messages) =>
    Effect.flatMap(resolveExisting("send", queue), (info) => sendTo(info, messages))

  // ---------------------------------------------------------------- take and deliveries

  const changeVisibility = (operation: string, url: string, receiptHandle: string, timeout: number) =>
    call("ChangeMessageVisibility", () =>
      client.send(
        new ChangeMessageVisibilityCommand({ QueueUrl: url, ReceiptHandle: receiptHandle, VisibilityTimeout: timeout })
      )
    ).pipe(
      Effect.asVoid,
      Effect.mapError((error) => ({
        stale: isStaleReceipt(error),
        error: toBrokerError(operation, endpointLabel)(error)
      }))
    )

  const notBeforeOf = (body: string): Effect.Effect<number | undefined> =>
    Envelope.decode(body).pipe(
      Effect.map((envelope) => envelope.notBefore),
      Effect.orElseSucceed(() => undefined)
    )

  /** What one delivery knows and has done; shared by its settle operations. */
  interface DeliveryState {
    readonly info: QueueInfo
    readonly message: Message
    readonly messageId: string
    readonly ownHandle: string
    readonly body: string
    readonly id: string
    readonly lock: Semaphore.Semaphore
    settled: boolean
    /** A retry/deadLetter whose replacement was sent but whose delete failed: later settles only delete. */
    replaced: boolean
  }

  // Settle helpers live here, not in each delivery: a delivery is made per received message, so
  // it holds only its state and thin methods (no per-delivery closures or prebuilt effects).

  /** Run `effect` unless the delivery is settled already; mark it settled when it succeeds. */
  function settleOnce(state: DeliveryState, effect: () => Effect.Effect<void, BrokerError>) {
    return state.lock.withPermits(1)(
      Effect.suspend(() =>
        state.settled
          ? Effect.void
          : Effect.map(effect(), () => {
              state.settled = true
            })
      )
    )
  }

  /**
   * Delete the original message. Deletes use the latest handle this process holds (SQS only
   * honours the newest); visibility changes use the delivery's own, so a stale holder never
   * moves another holder's lease.
   */
  function removeOriginal(state: DeliveryState, operation: string) {
    return deleteMessage(
      state.info.url,
      state.messageId,
      latestHandle(state.info.url, state.messageId, state.ownHandle),
      operation
    )
  }

  function replaceWith(state: DeliveryState, operation: string, send: Effect.Effect<unknown, BrokerError>) {
    return state.replaced
      ? removeOriginal(state, operation)
      : Effect.flatMap(send, () => {
          state.replaced = true
          return removeOriginal(state, operation)
        })
  }

  function retryDelivery(state: DeliveryState, options: { readonly body: string; readonly delay: number }) {
    const { info, messageId, ownHandle, body, id } = state
    return Effect.gen(function* () {
      if (state.replaced) return yield* removeOriginal(state, "retry")
      if (info.fifo && options.body === body) {
        // unchanged body (a delay hop): keep the message and hide it, the only per-message delay FIFO has
        const notBefore = yield* notBeforeOf(body)
        const wanted = Math.max(options.delay, notBefore === undefined ? 0 : notBefore - Date.now())
        const timeout = seconds(wanted, maxVisibilitySeconds)
        const sentAt = Number(state.message.Attributes?.SentTimestamp ?? Date.now())
        const ageSeconds = (Date.now() - sentAt) / 1000
        // past the retention period SQS drops the message even while hidden: re-send it instead
        if (ageSeconds + timeout < info.retentionSeconds - 3600) {
          return yield* changeVisibility("retry", info.url, ownHandle, timeout).pipe(
            Effect.mapError((e) => e.error),
            Effect.tap(() => Effect.sync(() => forgetHandle(info.url, messageId, ownHandle)))
          )
        }
      }
      const entry: OutEntry = {
        body: options.body,
        attributes: idAttributes(options.body, id),
        ...(info.fifo
          ? { groupId: state.message.Attributes?.MessageGroupId ?? fifoId(id), dedupId: fifoId(`r-${messageId}`) }
          : { delaySeconds: seconds(options.delay, maxDelaySeconds) })
      }
      yield* replaceWith(state, "retry", sendEntries(info, [entry], "retry"))
    })
  }

  function deadLetterDelivery(state: DeliveryState, record: Broker.DeadLetterRecord) {
    const { info, messageId, id } = state
    return Effect.gen(function* () {
      if (state.replaced) return yield* removeOriginal(state, "deadLetter")
      const dlq = yield* resolveDeadLetter("deadLetter", info.name, true)
      if (dlq === undefined) {
        return yield* Effect.fail(
          brokerError(
            "NotFound",
            "deadLetter",
            `SQS dead-letter queue of ${info.name} does not exist (createQueues is off)`
          )
        )
      }
      const attributes: Record<string, MessageAttributeValue> = {
        [attr.id]: stringAttribute(id),
        [attr.reason]: stringAttribute(record.reason),
        [attr.attempts]: numberAttribute(record.attempts),
        [attr.failedAt]: numberAttribute(record.failedAt),
        [attr.source]: stringAttribute(messageId)
      }
      // the error text is cut so that body and attributes fit the dead-letter queue's size limit
      const safeRecordBody = safeBody(record.body, settings.escapeSupplementary)
      const budget = dlq.maxMessageBytes - messageSize(safeRecordBody, attributes) - attr.error.length - 6 - 8
      attributes[attr.error] = stringAttribute(
        truncateUtf8(
          record.error.length === 0 ? "-" : safeBody(record.error, settings.escapeSupplementary),
          Math.max(1, budget)
        )
      )
      const entry: OutEntry = {
        body: record.body.length === 0 ? " " : record.body,
        attributes,
        ...(dlq.fifo ? { groupId: fifoId(`dlq-${messageId}`), dedupId: fifoId(`d-${messageId}`) } : {})
      }
      yield* replaceWith(state, "deadLetter", sendEntries(dlq, [entry], "deadLetter"))
    })
  }

  function extendDeliveryLease(state: DeliveryState, ms: number) {
    return state.lock.withPermits(1)(
      Effect.suspend(() =>
        state.settled
          ? Effect.void
          : changeVisibility("extendLease", state.info.url, state.ownHandle, seconds(ms, maxVisibilitySeconds)).pipe(
              Effect.mapError((e) =>
                e.stale
                  ? brokerError("NotFound", "extendLease", "the lease was lost: the message is no longer in flight")
                  : e.error
              )
            )
      )
    )
  }

  function releaseDelivery(state: DeliveryState) {
    const { info, messageId, ownHandle } = state
    return state.replaced
      ? removeOriginal(state, "release")
      : changeVisibility("release", info.url, ownHandle, 0).pipe(
          // no longer in flight: it is visible again already
          Effect.catchIf(
            (e) => e.stale,
            () => Effect.void
          ),
          Effect.mapError((e) => e.error),
          Effect.tap(() => Effect.sync(() => forgetHandle(info.url, messageId, ownHandle)))
        )
  }

  function makeDelivery(info: QueueInfo, message: Message): Broker.Delivery {
    const messageId = message.MessageId ?? ""
    const body = message.Body ?? ""
    const state: DeliveryState = {
      info,
      message,
      messageId,
      ownHandle: message.ReceiptHandle ?? "",
      body,
      id: message.MessageAttributes?.[attr.id]?.StringValue ?? idInBody(body) ?? messageId,
      lock: Semaphore.makeUnsafe(1),
      settled: false,
      replaced: false
    }
    // methods and getters, not arrow properties: settle effects are built only when used
    return {
      id: state.id,
      body,
      receiveCount: Number(message.Attributes?.ApproximateReceiveCount ?? 1),
      get ack() {
        return settleOnce(state, () => removeOriginal(state, "ack"))
      },
      retry(options) {
        return settleOnce(state, () => retryDelivery(state, options))
      },
      deadLetter(record) {
        return settleOnce(state, () => deadLetterDelivery(state, record))
      },
      extendLease(ms) {
        return extendDeliveryLease(state, ms)
      },
      get release() {
        return settleOnce(state, () => releaseDelivery(state))
      }
    }
  }

  // only what deliveries and dead-letter entries read: every attribute more is parsed per message
  const standardSystemAttributes: Array<MessageSystemAttributeName> = ["ApproximateReceiveCount", "SentTimestamp"]
  const fifoSystemAttributes: Array<MessageSystemAttributeName> = [...standardSystemAttributes, "MessageGroupId"]

  const receive = (info: QueueInfo, max: number, visibility: number, wait: number) => {
    const input = {
      QueueUrl: info.url,
      MaxNumberOfMessages: Math.max(1, Math.min(maxBatchEntries, max)),
      VisibilityTimeout: visibility,
      WaitTimeSeconds: wait,
      MessageSystemAttributeNames: info.fifo ? fifoSystemAttributes : standardSystemAttributes,
      MessageAttributeNames: ["All"]
    }
    // a short poll answers at once: no abort signal, which would empty the SDK's middleware cache
    return (
      wait === 0
        ? call("ReceiveMessage", () => client.send(new ReceiveMessageCommand(input)))
        : callAbortable("ReceiveMessage", (abortSignal) =>
            settings.pollClient.send(new ReceiveMessageCommand(input), { abortSignal })
          )
    ).pipe(
      Effect.map((out) => {
        const messages = out.Messages ?? []
        for (const message of messages) {
          if (message.MessageId !== undefined && message.ReceiptHandle !== undefined) {
            rememberHandle(info.url, message.MessageId, message.ReceiptHandle)
          }
        }
        return messages
      }),
      forgetOnMissing(info.name)
    )
  }

  /** Standard queues whose last take came back full: their next take polls in parallel. */
  const busy = new Set<string>()

  const takeOnce: Broker.BrokerShape["take"] = (queue, options) =>
    Effect.gen(function* () {
      if (options.max <= 0) return []
      const info = yield* resolveExisting("take", queue)
      const visibility = Math.max(1, seconds(options.lease, maxVisibilitySeconds))
      // long polling in whole seconds, capped at SQS's 20 s. Under a second: one short poll, then
      // the rest of the wait as a plain sleep, so callers polling with a short wait neither spin
      // nor leave a long poll in flight (an interrupted long poll can hide messages for a lease)
      const waitMs = Number.isFinite(options.wait) ? Math.max(0, options.wait) : 20_000
      const waitSeconds = Math.min(20, Math.floor(waitMs / 1000))
      const started = Date.now()
      let messages: ReadonlyArray<Message> = []
      const polls = info.fifo ? 1 : Math.min(maxParallelPolls, Math.ceil(options.max / maxBatchEntries))
      if (polls > 1 && busy.has(info.url)) {
        // a busy standard queue: several short polls at once, as many as `max` needs (10 each).
        // Short, so none is left waiting while the others' messages sit in hand. One failed poll
        // does not drop what the others received; the take fails only when nothing came.
        const parts = yield* Effect.forEach(
          Array.from({ length: polls }, (_, index) => Math.min(maxBatchEntries, options.max - index * maxBatchEntries)),
          (count) => Effect.result(receive(info, count, visibility, 0)),
          { concurrency: "unbounded" }
        )
        let failure: unknown = undefined
        const received: Array<Message> = []
        for (const part of parts) {
          if (part._tag === "Success") received.push(...part.success)
          else failure ??= part.failure
        }
        if (received.length === 0 && failure !== undefined) {
          return yield* Effect.fail(toBrokerError("take", endpointLabel)(failure))
        }
        messages = received
      }
      if (messages.length === 0) {
        messages = yield* receive(info, options.max, visibility, waitSeconds).pipe(mapped("take"))
      }
      // a full batch: the next take on this queue starts with parallel polls
      if (messages.length >= maxBatchEntries) busy.add(info.url)
      else busy.delete(info.url)
      if (messages.length === 0 && waitSeconds === 0 && waitMs > 0) {
        yield* Effect.sleep(Math.max(0, waitMs - (Date.now() - started)))
      }
      return messages.map((message) => makeDelivery(info, message))
    })

  /**
   * A cached queue URL that stopped existing (the queue was deleted and maybe re-created elsewhere)
   * fails once with NotFound and is forgotten: try once more with a fresh resolution.
   */
  const reresolving = <A>(queue: string, run: () => Effect.Effect<A, BrokerError>): Effect.Effect<A, BrokerError> =>
    Effect.suspend(() => {
      const wasCached = queues.has(queue)
      return run().pipe(Effect.catchIf((error) => wasCached && error.reason === "NotFound" && !queues.has(queue), run))
    })

  const send: Broker.BrokerShape["send"] = (queue, messages) => {
    if (messages.length === 0) return Effect.succeed([])
    const cached = queues.get(queue)
    // the common case, kept short: a known queue (a stale URL is forgotten by the failed call,
    // then resolved again once, as `reresolving` does)
    if (cached !== undefined) {
      return Effect.catchIf(
        sendTo(cached, messages),
        (error) => error.reason === "NotFound" && !queues.has(queue),
        () => sendOnce(queue, messages)
      )
    }
    return reresolving(queue, () => sendOnce(queue, messages))
  }

  const take: Broker.BrokerShape["take"] = (queue, options) => reresolving(queue, () => takeOnce(queue, options))

  // ---------------------------------------------------------------- dead letters

  const scanLocks = new Map<string, Semaphore.Semaphore>()
  const scanLock = (name: string) => {
    let lock = scanLocks.get(name)
    if (lock === undefined) {
      lock = Semaphore.makeUnsafe(1)
      scanLocks.set(name, lock)
    }
    return lock
  }

  const toEntry = (message: Message): Broker.DeadLetterEntry => {
    const attributes = message.MessageAttributes ?? {}
    const reasonText = attributes[attr.reason]?.StringValue
    const reason: Broker.DeadLetterReason =
      reasonText === "unrecoverable" || reasonText === "undecodable" ? reasonText : "exhausted"
    const receiveCount = Number(message.Attributes?.ApproximateReceiveCount ?? 0)
    return {
      id: attributes[attr.id]?.StringValue ?? idInBody(message.Body ?? "") ?? message.MessageId ?? "",
      body: message.Body ?? "",
      reason,
      // without our attributes the message was moved by the queue's own RedrivePolicy
      error: attributes[attr.error]?.StringValue ?? "moved by the SQS RedrivePolicy (maxReceiveCount reached)",
      attempts: Number(attributes[attr.attempts]?.StringValue ?? Math.max(0, receiveCount - 1)),
      failedAt: Number(attributes[attr.failedAt]?.StringValue ?? message.Attributes?.SentTimestamp ?? 0)
    }
  }

  const approximateCounts = (url: string) =>
    call("GetQueueAttributes", () =>
      client.send(
        new GetQueueAttributesCommand({
          QueueUrl: url,
          AttributeNames: [
            "ApproximateNumberOfMessages",
            "ApproximateNumberOfMessagesNotVisible",
            "ApproximateNumberOfMessagesDelayed"
          ]
        })
      )
    ).pipe(
      Effect.map((out) => ({
        visible: Number(out.Attributes?.ApproximateNumberOfMessages ?? 0),
        notVisible: Number(out.Attributes?.ApproximateNumberOfMessagesNotVisible ?? 0),
        delayed: Number(out.Attributes?.ApproximateNumberOfMessagesDelayed ?? 0)
      }))
    )

  /**
   * Receive every visible message of a dead-letter queue (hidden briefly), let `use` decide, then
   * make the ones it did not delete visible again. Approximate on SQS: messages hidden by another
   * reader at that moment are not seen.
   */
  const scan = <A>(
    operation: string,
    queue: string,
    use: (
      dlq: QueueInfo,
      messages: ReadonlyArray<Message>
    ) => Effect.Effect<{ readonly result: A; readonly removed: ReadonlySet<string> }, BrokerError>,
    empty: A
  ): Effect.Effect<A, BrokerError> =>
    scanLock(queue).withPermits(1)(
      Effect.gen(function* () {
        const dlq = yield* resolveDeadLetter(operation, queue, false)
        if (dlq === undefined) return empty
        const counts = yield* approximateCounts(dlq.url).pipe(forgetOnMissing(dlq.name), mapped(operation))
        const collected: Array<Message> = []
        const ids = new Set<string>()
        let removedIds: ReadonlySet<string> = new Set()
        const restore = Effect.suspend(() => {
          const items = collected.filter((message) => !removedIds.has(message.MessageId ?? ""))
          for (const item of items) forgetHandle(dlq.url, item.MessageId ?? "", item.ReceiptHandle ?? "")
          return Effect.forEach(
            chunk(
              items.map(() => 1),
              maxBatchEntries
            ),
            (indexes) =>
              call("ChangeMessageVisibilityBatch", () =>
                client.send(
                  new ChangeMessageVisibilityBatchCommand({
                    QueueUrl: dlq.url,
                    Entries: indexes.map((index, position) => ({
                      Id: String(position),
                      ReceiptHandle: items[index]!.ReceiptHandle,
                      VisibilityTimeout: 0
                    }))
                  })
                )
              ),
            { concurrency: settings.sendConcurrency, discard: true }
          ).pipe(Effect.ignore)
        })
        return yield* Effect.gen(function* () {
          let expected = counts.visible
          while (collected.length < expected) {
            const batch = yield* receive(dlq, maxBatchEntries, settings.scanVisibilitySeconds, 1).pipe(
              mapped(operation)
            )
            if (batch.length === 0) break
            for (const message of batch) {
              if (!ids.has(message.MessageId ?? "")) {
                ids.add(message.MessageId ?? "")
                collected.push(message)
              }
            }
            expected = Math.max(expected, collected.length + (batch.length === maxBatchEntries ? 1 : 0))
          }
          collected.sort((a, b) => Number(a.Attributes?.SentTimestamp ?? 0) - Number(b.Attributes?.SentTimestamp ?? 0))
          const { removed, result } = yield* use(dlq, collected)
          removedIds = removed
          return result
        }).pipe(Effect.ensuring(restore))
      })
    )

  const keep = (ids: ReadonlyArray<string> | undefined) => {
    if (ids === undefined) return () => true
    const wanted = new Set(ids)
    return (entry: Broker.DeadLetterEntry) => wanted.has(entry.id)
  }

  const removeFrom = (dlq: QueueInfo, operation: string, messages: ReadonlyArray<Message>) =>
    deleteMany(
      dlq.url,
      messages.map((message) => ({ messageId: message.MessageId ?? "", receiptHandle: message.ReceiptHandle ?? "" }))
    ).pipe(
      Effect.flatMap((outcome) => {
        const removed = new Set<string>()
        let firstError: BrokerError | undefined
        outcome.forEach((error, index) => {
          if (error === undefined) removed.add(messages[index]!.MessageId ?? "")
          else firstError ??= error
        })
        return Effect.succeed({
          removed,
          error: firstError === undefined ? undefined : brokerError(firstError.reason, operation, firstError.message)
        })
      })
    )

  const deadLetters: Broker.DeadLetterStore = {
    list: (queue, options) =>
      scan(
        "deadLetters.list",
        queue,
        (_, messages) =>
          Effect.succeed({
            result: messages
              .map(toEntry)
              .slice(Math.max(0, options.offset), Math.max(0, options.offset) + Math.max(0, options.limit)),
            removed: new Set<string>()
          }),
        []
      ),
    get: (queue, id) =>
      scan(
        "deadLetters.get",
        queue,
        (_, messages) =>
          Effect.succeed({
            result: Option.fromUndefinedOr(messages.map(toEntry).find((entry) => entry.id === id)),
            removed: new Set<string>()
          }),
        Option.none()
      ),
    count: (queue) =>
      Effect.gen(function* () {
        const dlq = yield* resolveDeadLetter("deadLetters.count", queue, false)
        if (dlq === undefined) return 0
        const counts = yield* approximateCounts(dlq.url).pipe(
          forgetOnMissing(dlq.name),
          Effect.catchIf(isQueueMissing, () => Effect.succeed({ visible: 0, notVisible: 0, delayed: 0 })),
          mapped("deadLetters.count")
        )
        return counts.visible + counts.notVisible + counts.delayed
      }),
    redrive: (queue, options) =>
      scan(
        "deadLetters.redrive",
        queue,
        (dlq, messages) =>
          Effect.gen(function* () {
            const wanted = keep(options.ids)
            const chosen = messages.filter((message) => wanted(toEntry(message)))
            if (chosen.length === 0) return { result: 0, removed: new Set<string>() }
            const info = yield* resolveExisting("deadLetters.redrive", queue)
            const entries = chosen.map((message): OutEntry => {
              const out = options.prepare(toEntry(message))
              return {
                body: out.body,
                attributes: idAttributes(out.body, out.id),
                ...(info.fifo
                  ? {
                      groupId: fifoId(out.group ?? out.id),
                      // the job id may still be inside SQS's 5-minute window: a fresh id per dead letter
                      dedupId: fifoId(`v-${message.MessageId ?? out.id}`)
                    }
                  : { delaySeconds: seconds(out.delay, maxDelaySeconds) })
              }
            })
            // at-least-once: removed from the dead-letter queue only after the send was confirmed
            yield* sendEntries(info, entries, "deadLetters.redrive")
            const { error, removed } = yield* removeFrom(dlq, "deadLetters.redrive", chosen)
            if (error !== undefined) return yield* Effect.fail(error)
            return { result: removed.size, removed }
          }),
        0
      ),
    purge: (queue, ids) =>
      scan(
        "deadLetters.purge",
        queue,
        (dlq, messages) =>
          Effect.gen(function* () {
            const wanted = keep(ids)
            const chosen = messages.filter((message) => wanted(toEntry(message)))
            if (chosen.length === 0) return { result: 0, removed: new Set<string>() }
            const { error, removed } = yield* removeFrom(dlq, "deadLetters.purge", chosen)
            if (error !== undefined) return yield* Effect.fail(error)
            return { result: removed.size, removed }
          }),
        0
      )
  }

  // ---------------------------------------------------------------- stats and admin

  const stats: Broker.BrokerShape["stats"] = (queue) =>
    Effect.gen(function* () {
      const info = yield* resolve("stats", queue, false)
      if (info === undefined) return { waiting: 0, active: 0, delayed: 0, dead: 0 }
      const main = yield* approximateCounts(info.url).pipe(forgetOnMissing(queue), mapped("stats"))
      const dead = yield* deadLetters.count(queue)
      return { waiting: main.visible, active: main.notVisible, delayed: main.delayed, dead }
    })

  const deleteQueue: Broker.BrokerShape["deleteQueue"] = (queue) =>
    Effect.gen(function* () {
      for (const name of [queue, deadLetterQueueName(queue)]) {
        const url = queues.get(name)?.url ?? (yield* lookup(name).pipe(mapped("deleteQueue")))
        queues.delete(name)
        if (url === undefined) continue
        yield* call("DeleteQueue", () => client.send(new DeleteQueueCommand({ QueueUrl: url }))).pipe(
          Effect.catchIf(isQueueMissing, () => Effect.void),
          mapped("deleteQueue")
        )
        handles.delete(url)
        const prefix = `${url}\n`
        for (const key of seen.keys()) if (key.startsWith(prefix)) seen.delete(key)
      }
    })

  return {
    name: "sqs",
    capabilities,
    validateQueueName: (queue) => check(queue, settings.fifo),
    send,
    take,
    deadLetters,
    stats,
    deleteQueue
  }
}
