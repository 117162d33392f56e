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
  type QueueAttributeName,
  ReceiveMessageCommand,
  SendMessageBatchCommand,
  SendMessageCommand,
  type SQSClient
} from "@aws-sdk/client-sqs"
import { type Broker, Envelope, type Errors } from "@errand/core"
import { Effect, Exit, Option, Request, RequestResolver, Semaphore } from "effect"
import { chunk, maxBatchEntries, messageSize, safeBody } from "./batch.js"
import { brokerError, entryReason, isQueueMissing, isStaleReceipt, reasonOf, toBrokerError } from "./errors.js"
import { check, deadLetterQueueName, fifoId } from "./names.js"

type BrokerError = Errors.BrokerError

/** Resolved settings the implementation runs with. */
export interface Settings {
  readonly client: SQSClient
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
  readonly attributes: Record<string, MessageAttributeValue>
  readonly delaySeconds?: number | undefined
  readonly groupId?: string | undefined
  readonly dedupId?: string | undefined
}

interface SentEntry {
  readonly messageId: string
  readonly sequenceNumber?: string | undefined
}

interface DeleteRequest extends Request.Request<void, BrokerError> {
  readonly _tag: "DeleteRequest"
  readonly queueUrl: string
  readonly messageId: string
  readonly receiptHandle: string
}
const DeleteRequest = Request.tagged<DeleteRequest>("DeleteRequest")

const stringAttribute = (value: string): MessageAttributeValue => ({ DataType: "String", StringValue: value })
const numberAttribute = (value: number): MessageAttributeValue => ({ DataType: "Number", StringValue: String(value) })

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
    Effect.tryPromise({ try: () => run(), catch: (cause) => cause })

  /** A call aborted on interruption: long polls, which would otherwise stay in flight. */
  const callAbortable = <A>(operation: string, run: (signal: AbortSignal) => Promise<A>): Effect.Effect<A, unknown> =>
    Effect.tryPromise({ try: (signal) => run(signal), catch: (cause) => cause })

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

  // The latest receipt handle per message: SQS only honours the most recent one.
  const handles = new Map<string, string>()
  const handleKey = (url: string, messageId: string) => `${url}\n${messageId}`
  const latestHandle = (url: string, messageId: string, fallback: string) =>
    handles.get(handleKey(url, messageId)) ?? fallback
  const maxHandles = 100_000
  const rememberHandle = (url: string, messageId: string, receiptHandle: string) => {
    const key = handleKey(url, messageId)
    handles.delete(key) // re-insert at the end: the map stays in receive order
    handles.set(key, receiptHandle)
    // messages settled elsewhere never come back to clear their entry: drop the oldest
    if (handles.size > maxHandles) {
      const oldest = handles.keys().next()
      if (oldest.done !== true) handles.delete(oldest.value)
    }
  }
  /** Forget a handle once its delivery gave the message back (it is no longer ours to delete). */
  const forgetHandle = (url: string, messageId: string, receiptHandle: string) => {
    const key = handleKey(url, messageId)
    if (handles.get(key) === receiptHandle) handles.delete(key)
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
            handles.delete(handleKey(url, items[index]!.messageId))
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

  const deleteResolver = RequestResolver.makeGrouped<DeleteRequest, string>({
    key: (entry) => entry.request.queueUrl,
    resolver: (entries, url) =>
      deleteBatch(
        url,
        entries.map((entry) => entry.request)
      ).pipe(
        Effect.map((outcome) => {
          entries.forEach((entry, index) => {
            const error = outcome[index]
            entry.completeUnsafe(error === undefined ? Exit.void : Exit.fail(error))
          })
        })
      )
  }).pipe(
    RequestResolver.batchN(maxBatchEntries),
    // 0: batch only what is requested together in one tick (no timer, so TestClock cannot stall acks)
    (resolver) =>
      settings.deleteBatchWindow > 0 ? RequestResolver.setDelay(resolver, settings.deleteBatchWindow) : resolver
  )

  /** Delete one message; concurrent deletes on one queue share `DeleteMessageBatch` calls. */
  const deleteMessage = (url: string, messageId: string, receiptHandle: string) =>
    Effect.request(DeleteRequest({ queueUrl: url, messageId, receiptHandle }), deleteResolver)

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

  const sendOne = (url: string, entry: OutEntry) =>
    call("SendMessage", () =>
      client.send(
        new SendMessageCommand({
          QueueUrl: url,
          MessageBody: entry.body,
          MessageAttributes: entry.attributes,
          ...(entry.delaySeconds !== undefined && entry.delaySeconds > 0 ? { DelaySeconds: entry.delaySeconds } : {}),
          ...(entry.groupId !== undefined ? { MessageGroupId: entry.groupId } : {}),
          ...(entry.dedupId !== undefined ? { MessageDeduplicationId: entry.dedupId } : {})
        })
      )
    ).pipe(
      Effect.map((out): SentEntry => ({ messageId: out.MessageId ?? "", sequenceNumber: out.SequenceNumber })),
      mapped("SendMessage")
    )

  const sendBatch = (url: string, entries: ReadonlyArray<OutEntry>) =>
    Effect.gen(function* () {
      const results: Array<SentEntry | undefined> = entries.map(() => undefined)
      let pending = entries.map((_, index) => index)
      for (let attempt = 0; pending.length > 0; attempt++) {
        const last = attempt + 1 >= settings.entryAttempts
        const sent = pending
        const out = yield* call("SendMessageBatch", () =>
          client.send(
            new SendMessageBatchCommand({
              QueueUrl: url,
              Entries: sent.map((index, position) => {
                const entry = entries[index]!
                return {
                  Id: String(position),
                  MessageBody: entry.body,
                  MessageAttributes: entry.attributes,
                  ...(entry.delaySeconds !== undefined && entry.delaySeconds > 0
                    ? { DelaySeconds: entry.delaySeconds }
                    : {}),
                  ...(entry.groupId !== undefined ? { MessageGroupId: entry.groupId } : {}),
                  ...(entry.dedupId !== undefined ? { MessageDeduplicationId: entry.dedupId } : {})
                }
              })
            })
          )
        ).pipe(mapped("SendMessageBatch"))
        const failed = new Map((out.Failed ?? []).map((entry) => [entry.Id, entry]))
        for (const ok of out.Successful ?? []) {
          const index = sent[Number(ok.Id)]
          if (index !== undefined) results[index] = { messageId: ok.MessageId ?? "", sequenceNumber: ok.SequenceNumber }
        }
        pending = []
        for (const [position, index] of sent.entries()) {
          if (results[index] !== undefined) continue
          const entry = failed.get(String(position))
          const senderFault = entry?.SenderFault ?? false
          const reason = entryReason(entry?.Code, entry?.Message, senderFault)
          // SenderFault true: the request itself is wrong and would fail again
          if (last || (senderFault && reason !== "Throttled")) {
            return yield* Effect.fail(
              brokerError(
                reason,
                "SendMessageBatch",
                `SQS SendMessageBatch entry failed at ${endpointLabel}: ${entry?.Code ?? "no result for entry"}${
                  senderFault ? " (sender fault)" : ""
                }`
              )
            )
          }
          pending.push(index)
        }
        if (pending.length > 0) yield* backoff(attempt)
      }
      return results as Array<SentEntry>
    })

  /** Send entries: batches of ≤ 10 and ≤ the byte budget, run concurrently (bounded). Results in input order. */
  const sendEntries = (info: QueueInfo, given: ReadonlyArray<OutEntry>, operation: string) =>
    Effect.gen(function* () {
      const safe = (text: string) => safeBody(text, settings.escapeSupplementary)
      // copied only where something had to be escaped
      const entries = given.map((entry): OutEntry => {
        const body = safe(entry.body)
        let attributes = entry.attributes
        for (const name in entry.attributes) {
          const value = entry.attributes[name]!
          if (value.StringValue === undefined) continue
          const text = safe(value.StringValue)
          if (text === value.StringValue) continue
          if (attributes === entry.attributes) attributes = { ...entry.attributes }
          attributes[name] = { ...value, StringValue: text }
        }
        return body === entry.body && attributes === entry.attributes ? entry : { ...entry, body, attributes }
      })
      const sizes = entries.map((entry) => messageSize(entry.body, entry.attributes))
      for (const size of sizes) {
        if (size > info.maxMessageBytes) {
          return yield* Effect.fail(
            brokerError(
              "PayloadTooLarge",
              operation,
              `message of ${size} bytes (body and attributes) exceeds the queue's MaximumMessageSize of ${info.maxMessageBytes} bytes`
            )
          )
        }
      }
      const batches = chunk(sizes, settings.maxBatchBytes)
      // FIFO: a group spread over several batches must be sent batch after batch to keep its order
      let concurrency = settings.sendConcurrency
      if (info.fifo && batches.length > 1) {
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
      const sendIndexes = (indexes: ReadonlyArray<number>) =>
        indexes.length === 1 && sizes[indexes[0]!]! > settings.maxBatchBytes
          ? Effect.map(sendOne(info.url, entries[indexes[0]!]!), (result) => [result])
          : sendBatch(
              info.url,
              indexes.map((index) => entries[index]!)
            )
      // one batch (every single send): no fan-out machinery
      if (batches.length === 1) return yield* sendIndexes(batches[0]!)
      const parts = yield* Effect.forEach(batches, sendIndexes, { concurrency })
      const results: Array<SentEntry> = new Array(entries.length)
      batches.forEach((indexes, batch) =>
        indexes.forEach((index, position) => (results[index] = parts[batch]![position]!))
      )
      return results
    }).pipe(
      forgetOnMissing(info.name),
      // `operation` is the contract call (send, retry, deadLetter…); the message names the SQS call
      Effect.mapError((error) => brokerError(error.reason, operation, error.message))
    )

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

  const sendOnce: Broker.BrokerShape["send"] = (queue, messages) =>
    Effect.gen(function* () {
      if (messages.length === 0) return []
      const info = yield* resolveExisting("send", queue)
      const entries: Array<OutEntry> = []
      for (const message of messages) {
        if (info.fifo && message.delay > 0) {
          return yield* Effect.fail(
            brokerError("Unknown", "send", "SQS FIFO queues take no per-message delay (capabilities.maxDelay is 0)")
          )
        }
        entries.push({
          body: message.body,
          attributes: { [attr.id]: stringAttribute(message.id) },
          ...(info.fifo
            ? { groupId: fifoId(message.group ?? message.id), dedupId: fifoId(message.id) }
            : { delaySeconds: seconds(message.delay, maxDelaySeconds) })
        })
      }
      const sent = yield* sendEntries(info, entries, "send")
      const now = Date.now()
      return messages.map(
        (message, index): Broker.SendResult =>
          info.fifo && isDuplicate(info.url, entries[index]!.dedupId!, sent[index]!.messageId, now)
            ? { id: message.id, duplicate: true }
            : { id: message.id, duplicate: false }
      )
    })

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

  const makeDelivery = (info: QueueInfo, message: Message): Broker.Delivery => {
    const messageId = message.MessageId ?? ""
    const ownHandle = message.ReceiptHandle ?? ""
    const body = message.Body ?? ""
    const id = message.MessageAttributes?.[attr.id]?.StringValue ?? messageId
    const group = message.Attributes?.MessageGroupId
    const sentAt = Number(message.Attributes?.SentTimestamp ?? Date.now())
    const lock = Semaphore.makeUnsafe(1)
    let settled = false
    // a retry/deadLetter whose replacement was sent but whose delete failed: later settles only delete
    let replaced = false
    // deletes use the latest handle this process holds (SQS only honours the newest); visibility
    // changes use this delivery's own, so a stale holder never moves another holder's lease
    const handle = () => latestHandle(info.url, messageId, ownHandle)

    const once = (effect: Effect.Effect<void, BrokerError>) =>
      lock.withPermits(1)(
        Effect.suspend(() =>
          settled
            ? Effect.void
            : Effect.tap(effect, () =>
                Effect.sync(() => {
                  settled = true
                })
              )
        )
      )

    const removeOriginal = (operation: string) =>
      deleteMessage(info.url, messageId, handle()).pipe(
        Effect.mapError((error) => brokerError(error.reason, operation, error.message))
      )

    const replaceWith = (operation: string, send: Effect.Effect<unknown, BrokerError>) =>
      Effect.gen(function* () {
        if (!replaced) {
          yield* send
          replaced = true
        }
        yield* removeOriginal(operation)
      })

    const ack = once(removeOriginal("ack"))

    const retry = (options: { readonly body: string; readonly delay: number }) =>
      once(
        Effect.gen(function* () {
          if (replaced) return yield* removeOriginal("retry")
          if (info.fifo && options.body === body) {
            // unchanged body (a delay hop): keep the message and hide it, the only per-message delay FIFO has
            const notBefore = yield* notBeforeOf(body)
            const wanted = Math.max(options.delay, notBefore === undefined ? 0 : notBefore - Date.now())
            const timeout = seconds(wanted, maxVisibilitySeconds)
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
            attributes: { [attr.id]: stringAttribute(id) },
            ...(info.fifo
              ? { groupId: group ?? fifoId(id), dedupId: fifoId(`r-${messageId}`) }
              : { delaySeconds: seconds(options.delay, maxDelaySeconds) })
          }
          yield* replaceWith("retry", sendEntries(info, [entry], "retry"))
        })
      )

    const deadLetter = (record: Broker.DeadLetterRecord) =>
      once(
        Effect.gen(function* () {
          if (replaced) return yield* removeOriginal("deadLetter")
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
          const safe = (text: string) => safeBody(text, settings.escapeSupplementary)
          const budget = dlq.maxMessageBytes - messageSize(safe(record.body), attributes) - attr.error.length - 6 - 8
          attributes[attr.error] = stringAttribute(
            truncateUtf8(record.error.length === 0 ? "-" : safe(record.error), Math.max(1, budget))
          )
          const entry: OutEntry = {
            body: record.body.length === 0 ? " " : record.body,
            attributes,
            ...(dlq.fifo ? { groupId: fifoId(`dlq-${messageId}`), dedupId: fifoId(`d-${messageId}`) } : {})
          }
          yield* replaceWith("deadLetter", sendEntries(dlq, [entry], "deadLetter"))
        })
      )

    const extendLease = (ms: number) =>
      lock.withPermits(1)(
        Effect.suspend(() =>
          settled
            ? Effect.void
            : changeVisibility("extendLease", info.url, ownHandle, seconds(ms, maxVisibilitySeconds)).pipe(
                Effect.mapError((e) =>
                  e.stale
                    ? brokerError("NotFound", "extendLease", "the lease was lost: the message is no longer in flight")
                    : e.error
                )
              )
        )
      )

    const release = once(
      Effect.suspend(() =>
        replaced
          ? removeOriginal("release")
          : changeVisibility("release", info.url, ownHandle, 0).pipe(
              // no longer in flight: it is visible again already
              Effect.catchIf(
                (e) => e.stale,
                () => Effect.void
              ),
              Effect.mapError((e) => e.error),
              Effect.tap(() => Effect.sync(() => forgetHandle(info.url, messageId, ownHandle)))
            )
      )
    )

    return {
      id,
      body,
      receiveCount: Number(message.Attributes?.ApproximateReceiveCount ?? 1),
      ack,
      retry,
      deadLetter,
      extendLease,
      release
    }
  }

  const receive = (info: QueueInfo, max: number, visibility: number, wait: number) =>
    callAbortable("ReceiveMessage", (abortSignal) =>
      client.send(
        new ReceiveMessageCommand({
          QueueUrl: info.url,
          MaxNumberOfMessages: Math.max(1, Math.min(maxBatchEntries, max)),
          VisibilityTimeout: visibility,
          WaitTimeSeconds: wait,
          MessageSystemAttributeNames: ["All"],
          MessageAttributeNames: ["All"]
        }),
        { abortSignal }
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

  const send: Broker.BrokerShape["send"] = (queue, messages) => reresolving(queue, () => sendOnce(queue, messages))

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
      id: attributes[attr.id]?.StringValue ?? message.MessageId ?? "",
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
                attributes: { [attr.id]: stringAttribute(out.id) },
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
        const prefix = `${url}\n`
        for (const key of handles.keys()) if (key.startsWith(prefix)) handles.delete(key)
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
