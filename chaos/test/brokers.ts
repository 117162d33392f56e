/**
 * The brokers the vitest part of the chaos suite runs against. Every real adapter is required
 * (CI has Redis and RabbitMQ; fauxqs starts in-process); `CHAOS_ADAPTERS=memory,bullmq` narrows
 * the set while developing.
 */
import type { Broker } from "@errand/core"
import type { Layer } from "effect"
import { buildApp } from "fauxqs"
import type { AddressInfo } from "node:net"
import { randomUUID } from "node:crypto"
import { type AdapterConfig, type AdapterKind, brokerLayer } from "../src/internal/adapters.js"

export const selected: ReadonlyArray<AdapterKind> = (process.env.CHAOS_ADAPTERS?.split(",") ?? [
  "memory",
  "bullmq",
  "rabbitmq",
  "sqs"
]) as ReadonlyArray<AdapterKind>

export interface TestBroker {
  readonly kind: AdapterKind
  readonly config: AdapterConfig
  readonly layer: () => Layer.Layer<Broker.Broker, unknown>
  readonly stop: () => Promise<void>
}

/** Start what the adapter needs (fauxqs for SQS) and describe how to build its layer. */
export const startBroker = async (kind: AdapterKind): Promise<TestBroker> => {
  switch (kind) {
    case "memory":
      return { kind, config: { kind }, layer: () => brokerLayer({ kind }), stop: async () => {} }
    case "bullmq": {
      const config: AdapterConfig = {
        kind,
        url: process.env.REDIS_URL ?? "redis://127.0.0.1:6379",
        prefix: `chaos-${randomUUID().slice(0, 8)}`
      }
      return { kind, config, layer: () => brokerLayer(config), stop: async () => {} }
    }
    case "rabbitmq": {
      const config: AdapterConfig = { kind, url: process.env.AMQP_URL ?? "amqp://guest:guest@127.0.0.1:5672" }
      return { kind, config, layer: () => brokerLayer(config), stop: async () => {} }
    }
    case "sqs": {
      const app = buildApp({ logger: false })
      await app.listen({ port: 0, host: "127.0.0.1" })
      const { port } = app.server.address() as AddressInfo
      const config: AdapterConfig = {
        kind,
        endpoint: `http://127.0.0.1:${port}`,
        accessKeyId: "chaos",
        secretAccessKey: "chaos"
      }
      return { kind, config, layer: () => brokerLayer(config), stop: () => app.close() }
    }
  }
}
