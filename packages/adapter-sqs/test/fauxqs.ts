/**
 * Starts the fauxqs SQS emulator on 127.0.0.1 (a free port) for integration tests, or uses
 * `SQS_ENDPOINT` when set. Use from vitest `beforeAll` / `afterAll`.
 */
import type { AddressInfo } from "node:net"
import { type SqsBroker } from "../src/index.js"
import { buildApp } from "fauxqs"

export interface Emulator {
  readonly endpoint: string
  readonly stop: () => Promise<void>
}

/** Start fauxqs bound to 127.0.0.1 only (its `startFauxqs` always binds 0.0.0.0), or reuse `SQS_ENDPOINT`. */
export const start = async (): Promise<Emulator> => {
  const external = process.env.SQS_ENDPOINT
  if (external !== undefined && external !== "") return { endpoint: external, stop: async () => {} }
  const app = buildApp({ logger: false })
  await app.listen({ port: 0, host: "127.0.0.1" })
  const { port } = app.server.address() as AddressInfo
  return { endpoint: `http://127.0.0.1:${port}`, stop: () => app.close() }
}

/** Client options pointing at the emulator (static test credentials, never real ones). */
export const clientOptions = (endpoint: string): SqsBroker.Options => ({
  endpoint,
  // fauxqs 1.9 refuses characters beyond U+FFFF (its body check lacks the supplementary range)
  escapeSupplementary: true,
  allowInsecureEndpoint: endpoint.startsWith("http://"),
  region: process.env.AWS_REGION ?? "us-east-1",
  credentials: {
    accessKeyId: process.env.AWS_ACCESS_KEY_ID ?? "test",
    secretAccessKey: process.env.AWS_SECRET_ACCESS_KEY ?? "test"
  }
})

let counter = 0
/** A fresh queue name, unique per test (with the `.fifo` suffix for FIFO). */
export const queueName = (prefix: string, fifo = false): string =>
  `${prefix}-${process.pid}-${Date.now().toString(36)}-${(counter++).toString(36)}${fifo ? ".fifo" : ""}`
