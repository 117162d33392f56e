import { describe, expect, it } from "@effect/vitest"
import {
  DeleteMessageBatchCommand,
  GetQueueAttributesCommand,
  GetQueueUrlCommand,
  ReceiveMessageCommand,
  SendMessageBatchCommand,
  type SendMessageBatchRequestEntry,
  SendMessageCommand,
  SQSClient
} from "@aws-sdk/client-sqs"
import { Broker } from "@errand/core"
import { mockClient } from "aws-sdk-client-mock"
import { Effect, Layer } from "effect"
import { SqsBroker } from "../src/index.js"

const queueUrl = "https://sqs.us-east-1.amazonaws.com/123456789012/jobs"

const setup = (options: Partial<SqsBroker.Options> = {}) => {
  const client = new SQSClient({
    region: "us-east-1",
    credentials: { accessKeyId: "AKIDEXAMPLE", secretAccessKey: "x" }
  })
  const mock = mockClient(client)
  mock.on(GetQueueUrlCommand).resolves({ QueueUrl: queueUrl })
  mock.on(GetQueueAttributesCommand).resolves({
    Attributes: { MaximumMessageSize: "262144", MessageRetentionPeriod: "345600" }
  })
  const layer = Layer.fresh(SqsBroker.layer({ client, region: "us-east-1", ...options }))
  return { mock, layer }
}

const ok = (entries: ReadonlyArray<SendMessageBatchRequestEntry>) =>
  entries.map((entry) => ({ Id: entry.Id!, MessageId: `m-${entry.MessageBody}`, MD5OfMessageBody: "" }))

const attribute = (value: string) => ({ DataType: "String", StringValue: value })

const messages = (n: number, size = 10) =>
  Array.from({ length: n }, (_, i) => ({ id: `j${i}`, body: `${i}`.padEnd(size, "x"), delay: 0, priority: 0 }))

describe("SqsBroker batches (mocked SQS)", () => {
  it.live("send splits into batches of 10, retries a retryable failed entry alone, answers in order", () => {
    const { layer, mock } = setup()
    let failedOnce = false
    mock.on(SendMessageBatchCommand).callsFake(async (input: { Entries: Array<SendMessageBatchRequestEntry> }) => {
      const entries = input.Entries
      const victim = entries.find((e) => e.MessageBody!.startsWith("13"))
      if (victim !== undefined && !failedOnce) {
        failedOnce = true
        return {
          Successful: ok(entries.filter((e) => e !== victim)),
          Failed: [{ Id: victim.Id!, SenderFault: false, Code: "InternalError", Message: "try again" }]
        }
      }
      return { Successful: ok(entries), Failed: [] }
    })
    return Effect.gen(function* () {
      const broker = yield* Broker.Broker
      const results = yield* broker.send("jobs", messages(25))
      expect(results.map((r) => r.id)).toEqual(messages(25).map((m) => m.id))
      const calls = mock.commandCalls(SendMessageBatchCommand).map((c) => c.args[0].input.Entries!.length)
      expect(calls.slice(0, 3).sort()).toEqual([10, 10, 5])
      expect(calls.slice(3)).toEqual([1])
      const retried = mock.commandCalls(SendMessageBatchCommand)[3]!.args[0].input.Entries![0]!
      expect(retried.MessageBody!.startsWith("13")).toBe(true)
      expect(retried.MessageAttributes!["errand-id"]!.StringValue).toBe("j13")
    }).pipe(Effect.provide(layer))
  })

  it.live("a sender-fault entry fails the whole send with BrokerError and is not retried", () => {
    const { layer, mock } = setup()
    mock.on(SendMessageBatchCommand).callsFake(async (input: { Entries: Array<SendMessageBatchRequestEntry> }) => ({
      Successful: ok(input.Entries.slice(1)),
      Failed: [{ Id: input.Entries[0]!.Id!, SenderFault: true, Code: "InvalidMessageContents", Message: "bad" }]
    }))
    return Effect.gen(function* () {
      const broker = yield* Broker.Broker
      const error = yield* Effect.flip(broker.send("jobs", messages(3)))
      expect(error._tag).toBe("BrokerError")
      expect(error.message).toMatch(/InvalidMessageContents/u)
      expect(mock.commandCalls(SendMessageBatchCommand).length).toBe(1)
    }).pipe(Effect.provide(layer))
  })

  it.live("an entry that keeps failing is retried up to entryAttempts, then the send fails", () => {
    const { layer, mock } = setup({ entryAttempts: 3 })
    mock.on(SendMessageBatchCommand).callsFake(async (input: { Entries: Array<SendMessageBatchRequestEntry> }) => ({
      Successful: [],
      Failed: input.Entries.map((e) => ({ Id: e.Id!, SenderFault: false, Code: "ServiceUnavailable" }))
    }))
    return Effect.gen(function* () {
      const broker = yield* Broker.Broker
      const error = yield* Effect.flip(broker.send("jobs", messages(2)))
      expect(error.reason).toBe("Connection")
      expect(mock.commandCalls(SendMessageBatchCommand).length).toBe(3)
    }).pipe(Effect.provide(layer))
  })

  it.live("batches stay within the byte budget; a message over it goes alone through SendMessage", () => {
    const { layer, mock } = setup({ maxBatchBytes: 100_000 })
    mock.on(SendMessageBatchCommand).callsFake(async (input: { Entries: Array<SendMessageBatchRequestEntry> }) => ({
      Successful: ok(input.Entries),
      Failed: []
    }))
    mock.on(SendMessageCommand).resolves({ MessageId: "single" })
    return Effect.gen(function* () {
      const broker = yield* Broker.Broker
      yield* broker.send("jobs", [
        ...messages(4, 40_000),
        { id: "big", body: "b".repeat(150_000), delay: 0, priority: 0 }
      ])
      const batchSizes = mock
        .commandCalls(SendMessageBatchCommand)
        .map((c) => c.args[0].input.Entries!.reduce((n, e) => n + Buffer.byteLength(e.MessageBody!), 0))
      for (const bytes of batchSizes) expect(bytes).toBeLessThanOrEqual(100_000)
      expect(batchSizes.length).toBe(2)
      expect(mock.commandCalls(SendMessageCommand).length).toBe(1)
    }).pipe(Effect.provide(layer))
  })

  it.live("a failed delete entry is retried with the latest receipt handle, never reported as done", () => {
    const { layer, mock } = setup()
    const message = (handle: string, count: number) => ({
      Messages: [
        {
          MessageId: "m1",
          ReceiptHandle: handle,
          Body: "body",
          Attributes: { ApproximateReceiveCount: String(count) },
          MessageAttributes: { "errand-id": { DataType: "String", StringValue: "job-1" } }
        }
      ]
    })
    mock.on(ReceiveMessageCommand).resolvesOnce(message("h1", 1)).resolvesOnce(message("h2", 2)).resolves({})
    mock
      .on(DeleteMessageBatchCommand)
      .resolvesOnce({ Successful: [], Failed: [{ Id: "0", SenderFault: false, Code: "InternalError" }] })
      .resolves({ Successful: [{ Id: "0" }], Failed: [] })
    return Effect.gen(function* () {
      const broker = yield* Broker.Broker
      const [first] = yield* broker.take("jobs", { max: 1, lease: 30_000, wait: 0 })
      expect(first!.id).toBe("job-1")
      // the message came back (visibility expired): a newer receipt handle exists
      const [second] = yield* broker.take("jobs", { max: 1, lease: 30_000, wait: 0 })
      expect(second!.receiveCount).toBe(2)
      yield* first!.ack
      const handles = mock
        .commandCalls(DeleteMessageBatchCommand)
        .map((c) => c.args[0].input.Entries![0]!.ReceiptHandle)
      expect(handles).toEqual(["h2", "h2"])
    }).pipe(Effect.provide(layer))
  })

  it.live("a delete that finally fails fails the ack; a later ack tries again", () => {
    const { layer, mock } = setup({ entryAttempts: 2 })
    mock.on(ReceiveMessageCommand).resolves({
      Messages: [{ MessageId: "m1", ReceiptHandle: "h1", Body: "b", Attributes: {}, MessageAttributes: {} }]
    })
    mock
      .on(DeleteMessageBatchCommand)
      .resolvesOnce({ Successful: [], Failed: [{ Id: "0", SenderFault: true, Code: "ReceiptHandleIsInvalid" }] })
      .resolvesOnce({ Successful: [], Failed: [{ Id: "0", SenderFault: true, Code: "ReceiptHandleIsInvalid" }] })
      .resolves({ Successful: [{ Id: "0" }], Failed: [] })
    return Effect.gen(function* () {
      const broker = yield* Broker.Broker
      const [delivery] = yield* broker.take("jobs", { max: 1, lease: 30_000, wait: 0 })
      const error = yield* Effect.flip(delivery!.ack)
      expect(error._tag).toBe("BrokerError")
      expect(error.operation).toBe("ack")
      yield* delivery!.ack
      expect(mock.commandCalls(DeleteMessageBatchCommand).length).toBe(3)
      yield* delivery!.ack // settled: no call
      expect(mock.commandCalls(DeleteMessageBatchCommand).length).toBe(3)
    }).pipe(Effect.provide(layer))
  })

  it.live("concurrent acks share DeleteMessageBatch calls", () => {
    const { layer, mock } = setup()
    mock.on(ReceiveMessageCommand).resolves({
      Messages: Array.from({ length: 10 }, (_, i) => ({ MessageId: `m${i}`, ReceiptHandle: `h${i}`, Body: "b" }))
    })
    mock.on(DeleteMessageBatchCommand).callsFake(async (input: { Entries: Array<{ Id: string }> }) => ({
      Successful: input.Entries.map((e) => ({ Id: e.Id })),
      Failed: []
    }))
    return Effect.gen(function* () {
      const broker = yield* Broker.Broker
      const deliveries = yield* broker.take("jobs", { max: 10, lease: 30_000, wait: 0 })
      yield* Effect.forEach(deliveries, (d) => d.ack, { concurrency: "unbounded" })
      const calls = mock.commandCalls(DeleteMessageBatchCommand)
      expect(calls.length).toBeLessThan(10)
      expect(calls.flatMap((c) => c.args[0].input.Entries!.map((e) => e.ReceiptHandle)).sort()).toEqual(
        deliveries.map((_, i) => `h${i}`).sort()
      )
    }).pipe(Effect.provide(layer))
  })

  it.live("each ack sharing a DeleteMessageBatch gets its own entry's outcome", () => {
    const { layer, mock } = setup({ entryAttempts: 1 })
    let n = 0
    mock.on(ReceiveMessageCommand).callsFake(async () => ({
      Messages: Array.from({ length: 10 }, () => {
        const i = n++
        return { MessageId: `m${i}`, ReceiptHandle: `h${i}`, Body: "b" }
      })
    }))
    const refused = new Set(["h3", "h7", "h11"])
    mock
      .on(DeleteMessageBatchCommand)
      .callsFake(async (input: { Entries: Array<{ Id: string; ReceiptHandle: string }> }) => ({
        // answered out of order: outcomes must be matched by entry id, never by position
        Successful: input.Entries.filter((e) => !refused.has(e.ReceiptHandle))
          .map((e) => ({ Id: e.Id }))
          .reverse(),
        Failed: input.Entries.filter((e) => refused.has(e.ReceiptHandle)).map((e) => ({
          Id: e.Id,
          SenderFault: true,
          Code: "ReceiptHandleIsInvalid"
        }))
      }))
    return Effect.gen(function* () {
      const broker = yield* Broker.Broker
      const deliveries = [
        ...(yield* broker.take("jobs", { max: 10, lease: 30_000, wait: 0 })),
        ...(yield* broker.take("jobs", { max: 10, lease: 30_000, wait: 0 }))
      ].slice(0, 12)
      // 12 acks at once: a full batch of 10 goes at once, the other 2 after the window
      const results = yield* Effect.forEach(deliveries, (d) => Effect.result(d.ack), { concurrency: "unbounded" })
      const failed = deliveries.filter((_, i) => results[i]!._tag === "Failure").map((d) => d.id)
      expect(failed).toEqual(["m3", "m7", "m11"])
      for (const result of results) {
        if (result._tag === "Failure") expect(result.failure.operation).toBe("ack")
      }
      const calls = mock.commandCalls(DeleteMessageBatchCommand).map((c) => c.args[0].input.Entries!.length)
      expect(calls.sort((a, b) => a - b)).toEqual([2, 10])
    }).pipe(Effect.provide(layer))
  })

  it.live("the job id travels in core's envelope; any other body carries it as an attribute", () => {
    const { layer, mock } = setup()
    mock.on(SendMessageCommand).resolves({ MessageId: "single" })
    mock.on(SendMessageBatchCommand).callsFake(async (input: { Entries: Array<SendMessageBatchRequestEntry> }) => ({
      Successful: ok(input.Entries),
      Failed: []
    }))
    const envelope = (id: string) => JSON.stringify({ v: 1, id, job: "j", payload: {}, attempts: 0 })
    return Effect.gen(function* () {
      const broker = yield* Broker.Broker
      const sent = [
        { id: "job-1", body: envelope("job-1"), delay: 0, priority: 0 },
        { id: "raw-1", body: "not json", delay: 0, priority: 0 },
        { id: "other", body: envelope("job-2"), delay: 0, priority: 0 },
        { id: "job-1x", body: envelope("job-1"), delay: 0, priority: 0 },
        { id: 'q"1', body: envelope('q"1'), delay: 0, priority: 0 }
      ]
      yield* broker.send("jobs", sent)
      yield* broker.send("jobs", [sent[0]!])
      const entries = mock.commandCalls(SendMessageBatchCommand).flatMap((c) => c.args[0].input.Entries!)
      expect(entries.map((e) => e.MessageAttributes?.["errand-id"]?.StringValue)).toEqual([
        undefined,
        "raw-1",
        "other",
        "job-1x",
        'q"1'
      ])
      const single = mock.commandCalls(SendMessageCommand)[0]!.args[0].input
      expect(single.MessageBody).toBe(sent[0]!.body)
      expect(single.MessageAttributes).toBeUndefined()

      mock.on(ReceiveMessageCommand).resolves({
        Messages: [
          { MessageId: "m1", ReceiptHandle: "h1", Body: envelope("job-1") },
          {
            MessageId: "m2",
            ReceiptHandle: "h2",
            Body: "not json",
            MessageAttributes: { "errand-id": attribute("raw-1") }
          },
          {
            MessageId: "m3",
            ReceiptHandle: "h3",
            Body: envelope("job-2"),
            MessageAttributes: { "errand-id": attribute("x") }
          },
          { MessageId: "m4", ReceiptHandle: "h4", Body: "not json" },
          { MessageId: "m5", ReceiptHandle: "h5", Body: envelope('q"5') }
        ]
      })
      const deliveries = yield* broker.take("jobs", { max: 10, lease: 30_000, wait: 0 })
      // the attribute wins; without one, the envelope's id; else the SQS message id
      expect(deliveries.map((d) => d.id)).toEqual(["job-1", "raw-1", "x", "m4", "m5"])
    }).pipe(Effect.provide(layer))
  })

  it.live("a busy queue is taken with parallel short polls; one failed poll drops nothing", () => {
    const { layer, mock } = setup()
    let n = 0
    const batch = (count: number) =>
      Array.from({ length: count }, () => {
        const i = n++
        return { MessageId: `m${i}`, ReceiptHandle: `h${i}`, Body: "b" }
      })
    let call = 0
    mock.on(ReceiveMessageCommand).callsFake(async (input: { MaxNumberOfMessages: number }) => {
      call++
      // the third call (a parallel poll of the second take) fails
      if (call === 3) throw Object.assign(new Error("try again"), { name: "InternalError" })
      return { Messages: batch(input.MaxNumberOfMessages) }
    })
    return Effect.gen(function* () {
      const broker = yield* Broker.Broker
      // not known busy yet: one poll, 10 at most
      const first = yield* broker.take("jobs", { max: 30, lease: 30_000, wait: 1000 })
      expect(first.length).toBe(10)
      // busy now: three short polls at once; the failed one costs only its own share
      const second = yield* broker.take("jobs", { max: 30, lease: 30_000, wait: 1000 })
      expect(second.length).toBe(20)
      const polls = mock.commandCalls(ReceiveMessageCommand).map((c) => c.args[0].input)
      expect(polls.map((p) => [p.MaxNumberOfMessages, p.WaitTimeSeconds])).toEqual([
        [10, 1],
        [10, 0],
        [10, 0],
        [10, 0]
      ])
      expect(new Set([...first, ...second].map((d) => d.id)).size).toBe(30)
    }).pipe(Effect.provide(layer))
  })

  it.live("FIFO: batches of one group are sent one after another; independent groups concurrently", () => {
    const { layer, mock } = setup({ fifo: true })
    let inFlight = 0
    let maxInFlight = 0
    mock.on(SendMessageBatchCommand).callsFake(async (input: { Entries: Array<SendMessageBatchRequestEntry> }) => {
      inFlight++
      maxInFlight = Math.max(maxInFlight, inFlight)
      await new Promise((resolve) => setTimeout(resolve, 30))
      inFlight--
      return { Successful: ok(input.Entries), Failed: [] }
    })
    return Effect.gen(function* () {
      const broker = yield* Broker.Broker
      yield* broker.send(
        "jobs.fifo",
        messages(30).map((m) => ({ ...m, group: "g" }))
      )
      expect(maxInFlight).toBe(1)
      const entries = mock.commandCalls(SendMessageBatchCommand).flatMap((c) => c.args[0].input.Entries!)
      expect(entries.map((e) => e.MessageAttributes!["errand-id"]!.StringValue)).toEqual(messages(30).map((m) => m.id))
      expect(new Set(entries.map((e) => e.MessageGroupId))).toEqual(new Set(["g"]))
      expect(entries[0]!.MessageDeduplicationId).toBe("j0")
      maxInFlight = 0
      yield* broker.send("jobs.fifo", messages(30))
      expect(maxInFlight).toBeGreaterThan(1)
    }).pipe(Effect.provide(layer))
  })
})
