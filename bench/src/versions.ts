/**
 * The machine, Node, broker and client versions printed with every result.
 */
import { existsSync, readFileSync } from "node:fs"
import * as os from "node:os"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"

/** The version in a package's package.json, found from where the package resolves. */
export const packageVersion = (name: string): string => {
  try {
    let dir = dirname(fileURLToPath(import.meta.resolve(name)))
    for (;;) {
      const file = join(dir, "package.json")
      if (existsSync(file)) {
        const json = JSON.parse(readFileSync(file, "utf8")) as { name?: string; version?: string }
        if (json.name === name && json.version !== undefined) return json.version
      }
      const parent = dirname(dir)
      if (parent === dir) return "unknown"
      dir = parent
    }
  } catch {
    return "unknown"
  }
}

export interface Environment {
  readonly cores: number
  readonly cpu: string
  readonly platform: string
  readonly memoryGiB: number
  readonly loadAverageBefore: ReadonlyArray<number>
  readonly loadAverageAfter: ReadonlyArray<number>
  readonly node: string
  readonly brokers: Record<string, string>
  readonly clients: Record<string, string>
}

export const environment = async (
  brokers: Record<string, string>,
  loadBefore: ReadonlyArray<number>
): Promise<Environment> => ({
  cores: os.availableParallelism(),
  cpu: os.cpus()[0]?.model ?? "unknown",
  platform: `${os.platform()} ${os.release()} ${os.arch()}`,
  memoryGiB: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
  loadAverageBefore: loadBefore.map((x) => Math.round(x * 100) / 100),
  loadAverageAfter: os.loadavg().map((x) => Math.round(x * 100) / 100),
  node: process.version,
  brokers: {
    ...brokers,
    ...(brokers["sqs"] === "fauxqs emulator" ? { sqs: `fauxqs ${packageVersion("fauxqs")}` } : {})
  },
  clients: Object.fromEntries(
    ["effect", "bullmq", "ioredis", "amqplib", "@aws-sdk/client-sqs"].map((name) => [name, packageVersion(name)])
  )
})
