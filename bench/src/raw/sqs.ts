/**
 * The raw SQS side with @aws-sdk/client-sqs as AWS recommends: one `SendMessage` per single
 * enqueue; `SendMessageBatch` (10 entries, 4 calls in flight, as the Errand adapter's
 * `sendConcurrency`) for bulk; consumers long-poll `ReceiveMessage` with
 * `MaxNumberOfMessages = min(10, concurrency)` from `ceil(concurrency / 10)` pollers and delete
 * with `DeleteMessageBatch` (or `DeleteMessage` for a single message).
 */
import {
  CreateQueueCommand,
  DeleteMessageBatchCommand,
  DeleteMessageCommand,
  DeleteQueueCommand,
  GetQueueUrlCommand,
  type Message,
  ReceiveMessageCommand,
  SendMessageBatchCommand,
  SendMessageCommand,
  SQSClient
} from "@aws-sdk/client-sqs"
import { counter, now, pace } from "../harness.js"
import type { Side } from "../side.js"

export interface ClientOptions {
  readonly endpoint: string
  readonly region: string
  readonly credentials: { readonly accessKeyId: string; readonly secretAccessKey: string }
}

const sendConcurrency = 4

/** Run `f` over `items` with at most `limit` at once. */
const forEachLimited = async <A>(items: ReadonlyArray<A>, limit: number, f: (a: A) => Promise<unknown>) => {
  let next = 0
  const lane = async () => {
    while (next < items.length) await f(items[next++]!)
  }
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, lane))
}

export const make = (options: ClientOptions, timeout: number): Side => {
  const client = new SQSClient({
    endpoint: options.endpoint,
    region: options.region,
    credentials: options.credentials,
    maxAttempts: 4
  })
  const urls = new Map<string, string>()
  const urlOf = async (queue: string) => {
    let url = urls.get(queue)
    if (url === undefined) {
      url = (await client.send(new GetQueueUrlCommand({ QueueName: queue }))).QueueUrl!
      urls.set(queue, url)
    }
    return url
  }
  const body = (i: number) => JSON.stringify({ i })

  const sendBulk = async (queue: string, from: number, to: number) => {
    const url = await urlOf(queue)
    const batches: Array<Array<number>> = []
    for (let i = from; i < to; i += 10) {
      batches.push(Array.from({ length: Math.min(10, to - i) }, (_, k) => i + k))
    }
    await forEachLimited(batches, sendConcurrency, async (batch) => {
      const out = await client.send(
        new SendMessageBatchCommand({
          QueueUrl: url,
          Entries: batch.map((i) => ({ Id: String(i), MessageBody: body(i) }))
        })
      )
      if (out.Failed !== undefined && out.Failed.length > 0)
        throw new Error(`SendMessageBatch: ${out.Failed.length} failed`)
    })
  }

  const timed = async (f: () => Promise<unknown>) => {
    const start = now()
    await f()
    return now() - start
  }

  const withConsumer = async <A>(
    queue: string,
    concurrency: number,
    onJob: (i: number) => void,
    bodyOf: () => Promise<A>
  ): Promise<A> => {
    const url = await urlOf(queue)
    const abort = new AbortController()
    let stopped = false
    const perPoll = Math.min(10, concurrency)
    const poller = async () => {
      while (!stopped) {
        let messages: Array<Message>
        try {
          const out = await client.send(
            new ReceiveMessageCommand({ QueueUrl: url, MaxNumberOfMessages: perPoll, WaitTimeSeconds: 5 }),
            { abortSignal: abort.signal }
          )
          messages = out.Messages ?? []
        } catch (error) {
          if (stopped) return
          throw error
        }
        if (messages.length === 0) continue
        await Promise.all(messages.map(async (message) => onJob((JSON.parse(message.Body ?? "{}") as { i: number }).i)))
        if (messages.length === 1) {
          await client.send(new DeleteMessageCommand({ QueueUrl: url, ReceiptHandle: messages[0]!.ReceiptHandle! }))
        } else {
          await client.send(
            new DeleteMessageBatchCommand({
              QueueUrl: url,
              Entries: messages.map((message, k) => ({ Id: String(k), ReceiptHandle: message.ReceiptHandle! }))
            })
          )
        }
      }
    }
    const pollers = Array.from({ length: Math.ceil(concurrency / 10) }, () => poller())
    const failed = Promise.all(pollers).then(() => new Promise<never>(() => {}))
    try {
      return await Promise.race([bodyOf(), failed])
    } finally {
      stopped = true
      abort.abort()
      await Promise.allSettled(pollers)
    }
  }

  return {
    prepare: async (queue) => {
      const out = await client.send(
        new CreateQueueCommand({ QueueName: queue, Attributes: { VisibilityTimeout: "30" } })
      )
      urls.set(queue, out.QueueUrl!)
    },
    enqueueSequential: (queue, n) =>
      timed(async () => {
        const url = await urlOf(queue)
        for (let i = 0; i < n; i++) await client.send(new SendMessageCommand({ QueueUrl: url, MessageBody: body(i) }))
      }),
    enqueueConcurrent: (queue, n) =>
      timed(async () => {
        const url = await urlOf(queue)
        await Promise.all(
          Array.from({ length: n }, (_, i) =>
            client.send(new SendMessageCommand({ QueueUrl: url, MessageBody: body(i) }))
          )
        )
      }),
    enqueueBulk: (queue, n) => timed(() => sendBulk(queue, 0, n)),
    fill: (queue, n) => sendBulk(queue, 0, n),
    work: (queue, n, concurrency) => {
      const count = counter(n, timeout, `sqs consumer on ${queue}`)
      const start = now()
      return withConsumer(queue, concurrency, count.hit, async () => {
        await count.done
        return now() - start
      })
    },
    endToEnd: (queue, n, concurrency, chunk) => {
      const count = counter(n, timeout, `sqs end-to-end on ${queue}`)
      const start = now()
      return withConsumer(queue, concurrency, count.hit, async () => {
        for (let from = 0; from < n; from += chunk) await sendBulk(queue, from, Math.min(n, from + chunk))
        await count.done
        return now() - start
      })
    },
    latency: async (queue, n, perSecond, concurrency) => {
      const url = await urlOf(queue)
      const sent = new Array<number>(n).fill(NaN)
      const startedAt = new Array<number>(n).fill(NaN)
      const count = counter(n, timeout, `sqs latency on ${queue}`)
      const onJob = (i: number) => {
        startedAt[i] = now()
        count.hit()
      }
      return withConsumer(queue, concurrency, onJob, async () => {
        await pace(n, perSecond, (i) => {
          sent[i] = now()
          client.send(new SendMessageCommand({ QueueUrl: url, MessageBody: body(i) })).catch(() => {})
        })
        await count.done
        return sent.map((t, i) => startedAt[i]! - t)
      })
    },
    cleanup: async (queue) => {
      const url = await urlOf(queue)
      urls.delete(queue)
      await client.send(new DeleteQueueCommand({ QueueUrl: url }))
    },
    close: async () => {
      client.destroy()
    }
  }
}
