/**
 * Which broker a scenario runs on, as plain JSON so a worker process can rebuild the same layer.
 * Each adapter is imported only when used: a worker process then loads one client library, not
 * four, and restarts in a couple of seconds after a SIGKILL.
 */
import type { Broker } from "@errand/core"
import { Effect, Layer } from "effect"

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

const lazy = <A>(load: () => Promise<A>, build: (module: A) => Layer.Layer<Broker.Broker, unknown>) =>
  Layer.unwrap(Effect.map(Effect.promise(load), build))

export const brokerLayer = (config: AdapterConfig): Layer.Layer<Broker.Broker, unknown> => {
  switch (config.kind) {
    case "memory":
      return lazy(
        () => import("@errand/testing"),
        (m) => m.MemoryBroker.layer()
      )
    case "bullmq":
      // a short stalled check: a SIGKILLed worker's jobs come back about a second after the lease
      return lazy(
        () => import("@errand/adapter-bullmq"),
        (m) =>
          m.BullMQBroker.layer({
            url: config.url,
            prefix: config.prefix,
            stalledInterval: 1000,
            evictionPolicy: "ignore"
          })
      )
    case "rabbitmq":
      return lazy(
        () => import("@errand/adapter-rabbitmq"),
        (m) => m.RabbitMQBroker.layer({ url: config.url, connectionName: "errand-chaos" })
      )
    case "sqs":
      return lazy(
        () => import("@errand/adapter-sqs"),
        (m) =>
          m.SqsBroker.layer({
            endpoint: config.endpoint,
            allowInsecureEndpoint: true,
            region: "us-east-1",
            credentials: { accessKeyId: config.accessKeyId, secretAccessKey: config.secretAccessKey },
            sdkMaxAttempts: 2
          })
      )
  }
}
