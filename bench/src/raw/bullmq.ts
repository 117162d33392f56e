/**
 * The raw BullMQ side: `Queue.add` / `Queue.addBulk` and a `Worker` at the same concurrency as
 * Errand's, both on ioredis connections made once (as BullMQ's docs advise), completed jobs
 * trimmed to the last 1,000 as the Errand adapter does by default.
 */
import { Queue, Worker } from "bullmq"
import { Redis } from "ioredis"
import { counter, now, pace } from "../harness.js"
import type { Side } from "../side.js"

const prefix = "bench-raw"

export const make = async (url: string, timeout: number): Promise<Side> => {
  const connection = new Redis(url, { maxRetriesPerRequest: null, lazyConnect: true })
  connection.on("error", () => {})
  await connection.connect()
  const workerConnection = connection.duplicate({ maxRetriesPerRequest: null })
  workerConnection.on("error", () => {})

  const queues = new Map<string, Queue>()
  const queueOf = (name: string) => {
    let queue = queues.get(name)
    if (queue === undefined) {
      queue = new Queue(name, { connection, prefix })
      queue.on("error", () => {})
      queues.set(name, queue)
    }
    return queue
  }
  const bulk = (from: number, to: number) => {
    const out: Array<{ name: string; data: { i: number } }> = []
    for (let i = from; i < to; i++) out.push({ name: "noop", data: { i } })
    return out
  }

  const timed = async (f: () => Promise<unknown>) => {
    const start = now()
    await f()
    return now() - start
  }

  const withWorker = async <A>(
    name: string,
    concurrency: number,
    onJob: (i: number) => void,
    body: () => Promise<A>
  ): Promise<A> => {
    const worker = new Worker<{ i: number }>(
      name,
      async (job) => {
        onJob(job.data.i)
      },
      { connection: workerConnection, prefix, concurrency, removeOnComplete: { count: 1000 } }
    )
    worker.on("error", () => {})
    try {
      return await body()
    } finally {
      await worker.close()
    }
  }

  return {
    prepare: async () => {},
    enqueueSequential: (name, n) =>
      timed(async () => {
        const queue = queueOf(name)
        for (let i = 0; i < n; i++) await queue.add("noop", { i })
      }),
    enqueueConcurrent: (name, n) =>
      timed(() => {
        const queue = queueOf(name)
        return Promise.all(Array.from({ length: n }, (_, i) => queue.add("noop", { i })))
      }),
    enqueueBulk: (name, n) => timed(() => queueOf(name).addBulk(bulk(0, n))),
    fill: async (name, n) => {
      for (let from = 0; from < n; from += 1000) await queueOf(name).addBulk(bulk(from, Math.min(n, from + 1000)))
    },
    work: (name, n, concurrency) => {
      const count = counter(n, timeout, `bullmq worker on ${name}`)
      const start = now()
      return withWorker(name, concurrency, count.hit, async () => {
        await count.done
        return now() - start
      })
    },
    endToEnd: (name, n, concurrency, chunk) => {
      const count = counter(n, timeout, `bullmq end-to-end on ${name}`)
      const start = now()
      return withWorker(name, concurrency, count.hit, async () => {
        const queue = queueOf(name)
        for (let from = 0; from < n; from += chunk) await queue.addBulk(bulk(from, Math.min(n, from + chunk)))
        await count.done
        return now() - start
      })
    },
    latency: (name, n, perSecond, concurrency) => {
      const sent = new Array<number>(n).fill(NaN)
      const startedAt = new Array<number>(n).fill(NaN)
      const count = counter(n, timeout, `bullmq latency on ${name}`)
      const onJob = (i: number) => {
        startedAt[i] = now()
        count.hit()
      }
      return withWorker(name, concurrency, onJob, async () => {
        const queue = queueOf(name)
        await pace(n, perSecond, (i) => {
          sent[i] = now()
          queue.add("noop", { i }).catch(() => {})
        })
        await count.done
        return sent.map((t, i) => startedAt[i]! - t)
      })
    },
    cleanup: async (name) => {
      const queue = queueOf(name)
      queues.delete(name)
      await queue.obliterate({ force: true })
      await queue.close()
    },
    close: async () => {
      await Promise.all([...queues.values()].map((queue) => queue.close()))
      workerConnection.disconnect()
      connection.disconnect()
    }
  }
}

/** `redis_version` from `INFO server` (what `redis-cli INFO server` shows). */
export const serverVersion = async (url: string): Promise<string> => {
  const client = new Redis(url, {
    lazyConnect: true,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
    connectTimeout: 2000
  })
  client.on("error", () => {})
  try {
    await client.connect()
    const info = await client.info("server")
    return /redis_version:([^\r\n]+)/u.exec(info)?.[1] ?? "unknown"
  } finally {
    client.disconnect()
  }
}
