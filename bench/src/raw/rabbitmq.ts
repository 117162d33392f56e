/**
 * The raw RabbitMQ side with amqplib as its docs recommend: persistent messages on a durable
 * queue through a confirm channel (each single publish waits for its own confirm; a bulk
 * publishes everything, honouring `drain`, then `waitForConfirms`), and a consumer on its own
 * channel with prefetch = concurrency, acking each message.
 */
import * as amqp from "amqplib"
import { counter, now, pace } from "../harness.js"
import type { Side } from "../side.js"

export const make = async (url: string, timeout: number): Promise<Side & { readonly serverVersion: string }> => {
  // Other test suites restart the shared RabbitMQ; reopen the connection when it was lost, as any
  // long-running amqplib application must.
  let current: Promise<{ connection: amqp.ChannelModel; channel: amqp.ConfirmChannel }> | undefined
  const open = () => {
    if (current === undefined) {
      const opening = (async () => {
        // TCP_NODELAY, as the Errand adapter sets it: without it the raw side's publishes and acks
        // meet Nagle's algorithm and delayed ACKs (tens of ms), which would flatter Errand
        const connection = await amqp.connect(url, { noDelay: true })
        const forget = () => {
          if (current === opening) current = undefined
        }
        connection.on("error", (error: Error) =>
          process.stderr.write(`  (amqplib connection error: ${error.message})\n`)
        )
        connection.on("close", () => {
          if (current === opening) process.stderr.write("  (amqplib connection closed; reopening on next use)\n")
          forget()
        })
        const channel = await connection.createConfirmChannel()
        channel.on("error", (error: Error) => process.stderr.write(`  (amqplib channel error: ${error.message})\n`))
        channel.on("close", forget)
        return { connection, channel }
      })()
      current = opening
      opening.catch(() => {
        if (current === opening) current = undefined
      })
    }
    return current
  }
  const first = await open()
  const serverVersion = String(first.connection.connection.serverProperties.version ?? "unknown")

  const options = { persistent: true, contentType: "application/json" }
  const body = (i: number) => Buffer.from(JSON.stringify({ i }))

  const publishConfirmed = async (queue: string, i: number) => {
    const { channel } = await open()
    await new Promise<void>((resolve, reject) => {
      channel.sendToQueue(queue, body(i), options, (error: unknown) => (error ? reject(error) : resolve()))
    })
  }

  const publishAll = async (queue: string, from: number, to: number) => {
    const { channel } = await open()
    for (let i = from; i < to; i++) {
      if (!channel.sendToQueue(queue, body(i), options)) {
        await new Promise<void>((resolve) => channel.once("drain", resolve))
      }
    }
    await channel.waitForConfirms()
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
    const { connection } = await open()
    const consumer = await connection.createChannel()
    consumer.on("error", () => {})
    await consumer.prefetch(concurrency)
    await consumer.consume(queue, (message) => {
      if (message === null) return
      onJob((JSON.parse(message.content.toString("utf8")) as { i: number }).i)
      consumer.ack(message)
    })
    try {
      return await bodyOf()
    } finally {
      await consumer.close().catch(() => {})
    }
  }

  return {
    serverVersion,
    prepare: async (queue) => {
      await (await open()).channel.assertQueue(queue, { durable: true })
    },
    enqueueSequential: (queue, n) =>
      timed(async () => {
        for (let i = 0; i < n; i++) await publishConfirmed(queue, i)
      }),
    enqueueConcurrent: (queue, n) =>
      timed(() => Promise.all(Array.from({ length: n }, (_, i) => publishConfirmed(queue, i)))),
    enqueueBulk: (queue, n) => timed(() => publishAll(queue, 0, n)),
    fill: async (queue, n) => {
      await publishAll(queue, 0, n)
    },
    work: (queue, n, concurrency) => {
      const count = counter(n, timeout, `amqplib consumer on ${queue}`)
      const start = now()
      return withConsumer(queue, concurrency, count.hit, async () => {
        await count.done
        return now() - start
      })
    },
    endToEnd: (queue, n, concurrency, chunk) => {
      const count = counter(n, timeout, `amqplib end-to-end on ${queue}`)
      const start = now()
      return withConsumer(queue, concurrency, count.hit, async () => {
        for (let from = 0; from < n; from += chunk) await publishAll(queue, from, Math.min(n, from + chunk))
        await count.done
        return now() - start
      })
    },
    latency: (queue, n, perSecond, concurrency) => {
      const sent = new Array<number>(n).fill(NaN)
      const startedAt = new Array<number>(n).fill(NaN)
      const count = counter(n, timeout, `amqplib latency on ${queue}`)
      const onJob = (i: number) => {
        startedAt[i] = now()
        count.hit()
      }
      return withConsumer(queue, concurrency, onJob, async () => {
        await pace(n, perSecond, (i) => {
          sent[i] = now()
          publishConfirmed(queue, i).catch(() => {})
        })
        await count.done
        return sent.map((t, i) => startedAt[i]! - t)
      })
    },
    cleanup: async (queue) => {
      await (await open()).channel.deleteQueue(queue)
    },
    close: async () => {
      const opened = await current?.catch(() => undefined)
      current = undefined
      await opened?.channel.close().catch(() => {})
      await opened?.connection.close().catch(() => {})
    }
  }
}
