/**
 * For each adapter: how to reach its broker, the Errand side on the adapter's layer, the raw side
 * on the same broker, and the versions to report. `open` throws when the broker is unreachable or
 * the adapter cannot be loaded; the caller reports the adapter as skipped with that reason.
 */
import { Broker } from "@errand/core"
import { Effect, Layer } from "effect"
import { spawn } from "node:child_process"
import { dirname } from "node:path"
import { fileURLToPath } from "node:url"
import * as Errand from "./errand.js"
import { reasonOf, within } from "./harness.js"
import type { Side } from "./side.js"

export type AdapterName = "memory" | "bullmq" | "bullmq-plain" | "rabbitmq" | "rabbitmq-plain" | "sqs"

/**
 * The `-plain` entries run the adapter configured without priorities, against the same raw side:
 * BullMQ with `priorities: false` (its plain wait list), RabbitMQ with `maxPriority: 0` (a classic
 * queue without `x-max-priority`), as the raw sides use them. What an application that needs no
 * priorities gets.
 */
export const adapterNames: ReadonlyArray<AdapterName> = [
  "memory",
  "bullmq",
  "bullmq-plain",
  "rabbitmq",
  "rabbitmq-plain",
  "sqs"
]

export interface Opened {
  readonly errand: Side
  readonly raw: Side
  /** What the raw side is, for the table. */
  readonly rawLabel: string
  /** Broker and client versions. */
  readonly versions: Record<string, string>
  /** The memory broker itself (for its extra figures). */
  readonly close: () => Promise<void>
}

export const redisUrl = process.env["REDIS_URL"] ?? "redis://127.0.0.1:6379"
export const amqpUrl = process.env["AMQP_URL"] ?? "amqp://guest:guest@127.0.0.1:5672"

/** host:port of a URL, never its credentials. */
const hostPort = (url: string): string => {
  try {
    const parsed = new URL(url)
    return `${parsed.hostname}:${parsed.port || "default port"}`
  } catch {
    return "(unparsable URL)"
  }
}

const unreachable = (what: string, url: string) => (error: unknown) => {
  throw new Error(`${what} at ${hostPort(url)} unreachable: ${reasonOf(error)}`)
}

const closeAll = async (sides: ReadonlyArray<Side | undefined>) => {
  for (const side of sides) await side?.close().catch(() => {})
}

const openMemory = async (timeout: number): Promise<Opened> => {
  const { MemoryBroker } = await import("@errand/testing")
  const Direct = await import("./raw/memory.js")
  const broker = await Effect.runPromise(MemoryBroker.make())
  const errand = await Errand.make(Layer.succeed(Broker.Broker, broker), timeout)
  return {
    errand,
    raw: Direct.make(broker, timeout),
    rawLabel: "broker contract called directly (send/take/ack)",
    versions: {},
    close: () => closeAll([errand])
  }
}

const openBullMQ = async (timeout: number, priorities: boolean): Promise<Opened> => {
  const Raw = await import("./raw/bullmq.js")
  const redisVersion = await within(Raw.serverVersion(redisUrl), 5000, "redis INFO").catch(
    unreachable("Redis", redisUrl)
  )
  const { BullMQBroker } = await import("@errand/adapter-bullmq")
  const errand = await Errand.make(
    BullMQBroker.layer({ url: redisUrl, prefix: priorities ? "bench-errand" : "bench-errand-plain", priorities }),
    timeout
  )
  let raw: Side | undefined
  try {
    raw = await Raw.make(redisUrl, timeout)
  } catch (error) {
    await closeAll([errand])
    throw error
  }
  return {
    errand,
    raw,
    rawLabel: priorities ? "bullmq Queue / Worker" : "bullmq Queue / Worker; Errand with `priorities: false`",
    versions: { redis: redisVersion },
    close: () => closeAll([errand, raw])
  }
}

const openRabbitMQ = async (timeout: number, priorities: boolean): Promise<Opened> => {
  const Raw = await import("./raw/rabbitmq.js")
  const raw = await within(Raw.make(amqpUrl, timeout), 10_000, "amqplib connect").catch(
    unreachable("RabbitMQ", amqpUrl)
  )
  let errand: Side
  try {
    const { RabbitMQBroker } = await import("@errand/adapter-rabbitmq")
    errand = await Errand.make(
      RabbitMQBroker.layer({ url: amqpUrl, connectTimeout: 5000, ...(priorities ? {} : { maxPriority: 0 }) }),
      timeout,
      // declares the queue's topology, as the raw side's assertQueue does, outside the timing
      (broker, queue) => broker.stats(queue)
    )
  } catch (error) {
    await closeAll([raw])
    throw error
  }
  return {
    errand,
    raw,
    rawLabel: priorities
      ? "amqplib confirm channel + consumer"
      : "amqplib confirm channel + consumer; Errand with `maxPriority: 0`",
    versions: { rabbitmq: raw.serverVersion },
    close: () => closeAll([errand, raw])
  }
}

/**
 * fauxqs in its own process on 127.0.0.1 (a free port), so the emulator does not share the
 * bench's event loop and CPU time with the clients being measured.
 */
const startFauxqs = (): Promise<{ endpoint: string; stop: () => Promise<void> }> =>
  new Promise((resolve, reject) => {
    const script = [
      'const { buildApp } = await import("fauxqs")',
      "const app = buildApp({ logger: false })",
      'await app.listen({ port: 0, host: "127.0.0.1" })',
      "console.log(app.server.address().port)"
    ].join("\n")
    const child = spawn(process.execPath, ["--input-type=module", "-e", script], {
      cwd: dirname(dirname(fileURLToPath(import.meta.url))),
      stdio: ["ignore", "pipe", "pipe"]
    })
    let output = ""
    let errors = ""
    const timer = setTimeout(() => {
      child.kill("SIGKILL")
      reject(new Error("fauxqs did not start within 20 s"))
    }, 20_000)
    child.stderr.on("data", (chunk: Buffer) => (errors += chunk.toString()))
    child.on("exit", (code) => {
      clearTimeout(timer)
      reject(new Error(`fauxqs exited (${code}): ${errors.trim().split("\n").pop() ?? ""}`))
    })
    child.stdout.on("data", (chunk: Buffer) => {
      output += chunk.toString()
      const port = /^(\d+)\s/mu.exec(output)?.[1]
      if (port === undefined) return
      clearTimeout(timer)
      child.removeAllListeners("exit")
      resolve({
        endpoint: `http://127.0.0.1:${port}`,
        stop: () =>
          new Promise<void>((done) => {
            if (child.exitCode !== null) return done()
            child.once("exit", () => done())
            child.kill("SIGTERM")
            setTimeout(() => child.kill("SIGKILL"), 3000).unref()
          })
      })
    })
  })

const openSqs = async (timeout: number): Promise<Opened> => {
  let endpoint = process.env["SQS_ENDPOINT"]
  let stopEmulator = async () => {}
  if (endpoint === undefined || endpoint === "") {
    const emulator = await startFauxqs()
    endpoint = emulator.endpoint
    stopEmulator = emulator.stop
  }
  const client = {
    endpoint,
    region: process.env["AWS_REGION"] ?? "us-east-1",
    // static emulator credentials, never real ones
    credentials: { accessKeyId: "test", secretAccessKey: "test" }
  }
  try {
    const Raw = await import("./raw/sqs.js")
    const { SqsBroker } = await import("@errand/adapter-sqs")
    const errand = await Errand.make(
      SqsBroker.layer({ ...client, allowInsecureEndpoint: true }),
      timeout,
      // creates the queue (and its DLQ), as the raw side's CreateQueue does, outside the timing
      (broker, queue) => broker.take(queue, { max: 1, lease: 1000, wait: 0 })
    )
    const raw = Raw.make(client, timeout)
    return {
      errand,
      raw,
      rawLabel: "@aws-sdk/client-sqs",
      versions: { sqs: process.env["SQS_ENDPOINT"] ? "external endpoint" : "fauxqs emulator" },
      close: async () => {
        await closeAll([errand, raw])
        await stopEmulator()
      }
    }
  } catch (error) {
    await stopEmulator()
    throw error
  }
}

export const open = (name: AdapterName, timeout: number): Promise<Opened> => {
  switch (name) {
    case "memory":
      return openMemory(timeout)
    case "bullmq":
      return openBullMQ(timeout, true)
    case "bullmq-plain":
      return openBullMQ(timeout, false)
    case "rabbitmq":
      return openRabbitMQ(timeout, true)
    case "rabbitmq-plain":
      return openRabbitMQ(timeout, false)
    case "sqs":
      return openSqs(timeout)
  }
}
