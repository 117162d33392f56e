/**
 * Which broker a scenario runs on, as plain JSON so a worker process can rebuild the same layer.
 */
import { BullMQBroker } from "@errand/adapter-bullmq"
import { RabbitMQBroker } from "@errand/adapter-rabbitmq"
import { SqsBroker } from "@errand/adapter-sqs"
import type { Broker } from "@errand/core"
import { MemoryBroker } from "@errand/testing"
import type { Layer } from "effect"

export type AdapterConfig =
  | { readonly kind: "memory" }
  | { readonly kind: "bullmq"; readonly url: string; readonly prefix: string }
  | { readonly kind: "rabbitmq"; readonly url: string }
  | {
      readonly kind: "sqs"
      readonly endpoint: string
      readonly accessKeyId: string
      readonly secretAccessKey: string
    }

export type AdapterKind = AdapterConfig["kind"]

export const brokerLayer = (config: AdapterConfig): Layer.Layer<Broker.Broker, unknown> => {
  switch (config.kind) {
    case "memory":
      return MemoryBroker.layer()
    case "bullmq":
      // a short stalled check: a SIGKILLed worker's jobs come back within a second or two of the lease
      return BullMQBroker.layer({ url: config.url, prefix: config.prefix, stalledInterval: 1000, evictionPolicy: "ignore" })
    case "rabbitmq":
      return RabbitMQBroker.layer({ url: config.url, connectionName: "errand-chaos" })
    case "sqs":
      return SqsBroker.layer({
        endpoint: config.endpoint,
        allowInsecureEndpoint: true,
        region: "us-east-1",
        credentials: { accessKeyId: config.accessKeyId, secretAccessKey: config.secretAccessKey },
        sdkMaxAttempts: 2
      })
  }
}
