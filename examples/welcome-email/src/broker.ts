/**
 * Which broker the service runs on, from `ERRAND_BROKER` (memory | bullmq | rabbitmq | sqs;
 * default memory). Adapters are loaded with a dynamic import, so the example depends on none of
 * them: an adapter that is not installed fails with `AdapterUnavailable`.
 *
 * @since 0.0.0
 */
import type { Broker } from "@errand/core"
import * as MemoryBroker from "@errand/testing/MemoryBroker"
import { Config, Effect, Layer, Schema } from "effect"

/**
 * The brokers `ERRAND_BROKER` can name.
 *
 * @since 0.0.0
 */
export const kinds = ["memory", "bullmq", "rabbitmq", "sqs"] as const

/**
 * @since 0.0.0
 */
export type Kind = (typeof kinds)[number]

/**
 * The adapter for `ERRAND_BROKER` is not installed (or does not load).
 *
 * @since 0.0.0
 */
export class AdapterUnavailable extends Schema.TaggedError<AdapterUnavailable>()("AdapterUnavailable", {
  broker: Schema.String,
  message: Schema.String
}) {}

/** What each adapter module must look like: a namespace with `layer(options)`. */
interface AdapterModule {
  readonly [namespace: string]: {
    readonly layer?: (options: Record<string, unknown>) => Layer.Layer<Broker.Broker, unknown>
  }
}

const adapters: Record<Exclude<Kind, "memory">, { readonly module: string; readonly namespace: string }> = {
  bullmq: { module: "@errand/adapter-bullmq", namespace: "BullMQBroker" },
  rabbitmq: { module: "@errand/adapter-rabbitmq", namespace: "RabbitMQBroker" },
  sqs: { module: "@errand/adapter-sqs", namespace: "SqsBroker" }
}

const load = (
  kind: Exclude<Kind, "memory">
): Effect.Effect<NonNullable<AdapterModule[string]["layer"]>, AdapterUnavailable> => {
  const { module, namespace } = adapters[kind]
  return Effect.tryPromise({
    // a specifier in a variable: neither tsc nor the bundler follows it, so the adapter stays optional
    try: () => import(/* @vite-ignore */ module) as Promise<AdapterModule>,
    catch: (error) =>
      new AdapterUnavailable({
        broker: kind,
        message: `adapter ${kind} not available: ${module} could not be loaded (${error instanceof Error ? error.message.split("\n")[0] : String(error)}). Add it to this package's dependencies and install.`
      })
  }).pipe(
    Effect.flatMap((mod) => {
      const layer = mod[namespace]?.layer
      return layer
        ? Effect.succeed(layer)
        : Effect.fail(
            new AdapterUnavailable({
              broker: kind,
              message: `adapter ${kind} not available: ${module} has no ${namespace}.layer`
            })
          )
    })
  )
}

const optionalString = (name: string) =>
  Config.String(name).pipe(
    Config.option,
    Config.map((o) => (o._tag === "Some" && o.value !== "" ? o.value : undefined))
  )

/**
 * The broker layer for `ERRAND_BROKER`, configured from the environment:
 * - `memory` (default): the in-process `MemoryBroker` (nothing survives a restart).
 * - `bullmq`: `REDIS_URL` (default `redis://127.0.0.1:6379`).
 * - `rabbitmq`: `AMQP_URL` (default `amqp://guest:guest@127.0.0.1:5672`).
 * - `sqs`: `SQS_ENDPOINT` (an emulator such as LocalStack; the AWS default when absent) and
 *   `AWS_REGION`; credentials come from the AWS SDK's default chain.
 *
 * @since 0.0.0
 */
export const layer: Layer.Layer<Broker.Broker, unknown> = Layer.unwrap(
  Effect.gen(function* () {
    const kind = yield* Config.Literals(kinds, "ERRAND_BROKER").pipe(Config.withDefault("memory" as Kind))
    yield* Effect.logInfo(`broker: ${kind}`)
    switch (kind) {
      case "memory":
        return MemoryBroker.layer() as Layer.Layer<Broker.Broker, unknown>
      case "bullmq": {
        const url = yield* optionalString("REDIS_URL")
        const make = yield* load(kind)
        return make(url === undefined ? {} : { url })
      }
      case "rabbitmq": {
        const url = yield* optionalString("AMQP_URL")
        const make = yield* load(kind)
        return make(url === undefined ? {} : { url })
      }
      case "sqs": {
        const endpoint = yield* optionalString("SQS_ENDPOINT")
        const region = yield* optionalString("AWS_REGION")
        const make = yield* load(kind)
        return make({
          ...(endpoint !== undefined ? { endpoint, allowInsecureEndpoint: endpoint.startsWith("http://") } : {}),
          ...(region !== undefined ? { region } : endpoint !== undefined ? { region: "us-east-1" } : {})
        })
      }
    }
  })
)
