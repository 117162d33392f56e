/**
 * Errand's broker for AWS SQS, standard and FIFO queues, on `@aws-sdk/client-sqs`.
 *
 * The layer provides both `SqsBroker` (this adapter's own tag, with the client and the queue
 * resolver) and core's `Broker.Broker`.
 *
 * @since 0.1.0
 */
import { SQSClient, type SQSClientConfig } from "@aws-sdk/client-sqs"
import { Broker, Errors } from "@errand/core"
import { Config, Context, Effect, Layer } from "effect"
import * as internal from "./internal/broker.js"
import * as names from "./internal/names.js"

/**
 * Options for the SQS broker.
 *
 * @since 0.1.0
 */
export interface Options {
  /** AWS region; from the SDK's default chain (`AWS_REGION`…) when absent. */
  readonly region?: string | undefined
  /** A custom endpoint (LocalStack, fauxqs, a VPC endpoint). `http://` is refused unless `allowInsecureEndpoint`. */
  readonly endpoint?: string | undefined
  /** Credentials or a provider; the SDK's default provider chain when absent. */
  readonly credentials?: SQSClientConfig["credentials"] | undefined
  /** Accept an `http://` endpoint (local emulators only). Default false. */
  readonly allowInsecureEndpoint?: boolean | undefined
  /**
   * Every queue of this layer is a FIFO queue (names must end with `.fifo`). Default false:
   * standard queues, and `.fifo` names are refused (capabilities are static per layer).
   */
  readonly fifo?: boolean | undefined
  /** Create missing queues (and their dead-letter queues). Default true. */
  readonly createQueues?: boolean | undefined
  /**
   * Also set an SQS `RedrivePolicy` on queues this adapter creates: a safety net for poison
   * messages that crash the process before core can count the attempt. Keep `maxReceiveCount`
   * high (core's own attempt counter decides the dead-letter queue). Default: none.
   */
  readonly redrivePolicy?: { readonly maxReceiveCount: number } | undefined
  /**
   * `MaximumMessageSize` for created queues and the base of `capabilities.maxPayloadBytes`
   * (minus 1 KiB kept for the adapter's message attributes). Default 262,144; SQS allows up to 1,048,576.
   */
  readonly maxMessageBytes?: number | undefined
  /** Byte budget of one batch call. Default 262,144 (accepted by every SQS region and emulator). */
  readonly maxBatchBytes?: number | undefined
  /** Batch calls run at once by one `send`. Default 4. */
  readonly sendConcurrency?: number | undefined
  /** Attempts for a failed batch entry (send or delete) before the call fails. Default 5. */
  readonly entryAttempts?: number | undefined
  /** The SDK's own attempts per request (throttling, 5xx, network), with its standard backoff. Default 4. */
  readonly sdkMaxAttempts?: number | undefined
  /** Milliseconds acks wait to share one `DeleteMessageBatch` call (0: only acks made in the same tick). Default 5. */
  readonly deleteBatchWindow?: number | undefined
  /** Visibility timeout, in seconds, used while dead-letter listing hides messages. Default 30. */
  readonly scanVisibilitySeconds?: number | undefined
  /** Extra attributes for queues this adapter creates (`KmsMasterKeyId`…). */
  readonly queueAttributes?: Readonly<Record<string, string>> | undefined
  /**
   * Also write characters beyond U+FFFF as JSON `\uXXXX` escapes. Real SQS accepts them; the
   * fauxqs emulator (1.9) refuses them. Characters SQS itself refuses (U+FFFE, U+FFFF…) are
   * always escaped. Default false.
   */
  readonly escapeSupplementary?: boolean | undefined
  /**
   * Use this client instead of building one (its lifetime stays yours). A built layer uses two
   * clients, one for long polls: the SDK drops its middleware cache after any call with an abort
   * signal. A given client serves both (slower, same behaviour).
   */
  readonly client?: SQSClient | undefined
}

/**
 * The adapter's own service: the SQS client and the broker it backs.
 *
 * @since 0.1.0
 */
export class SqsBroker extends Context.Service<
  SqsBroker,
  {
    readonly client: SQSClient
    readonly broker: Broker.BrokerShape
  }
>()("@errand/adapter-sqs/SqsBroker") {}

/**
 * The capabilities of a layer with these options.
 *
 * @since 0.1.0
 */
export const capabilities = (options: Pick<Options, "fifo" | "maxMessageBytes"> = {}): Broker.Capabilities =>
  internal.capabilitiesFor(options.fifo === true, options.maxMessageBytes ?? 262_144)

/**
 * Why SQS refuses `queue` under these options (length, characters, `.fifo`), or `undefined`.
 *
 * @since 0.1.0
 */
export const validateQueueName = (queue: string, options: Pick<Options, "fifo"> = {}): string | undefined =>
  names.check(queue, options.fifo === true)

/**
 * The dead-letter queue's name for `queue`: `<name>-dlq` or `<name>-dlq.fifo`, shortened with a
 * hash where 80 characters would be passed.
 *
 * @since 0.1.0
 */
export const deadLetterQueueName: (queue: string) => string = names.deadLetterQueueName

const hostPort = (endpoint: string): string => {
  try {
    return new URL(endpoint).host
  } catch {
    return "<invalid endpoint>"
  }
}

const positive = (option: string, value: number | undefined, fallback: number, min = 1, max = Infinity) =>
  Effect.suspend(() => {
    const v = value ?? fallback
    return Number.isFinite(v) && v >= min && v <= max
      ? Effect.succeed(v)
      : Effect.fail(new Errors.InvalidOption({ option, reason: `must be a number from ${min} to ${max}` }))
  })

/**
 * Build the broker. Scoped: a client built here is destroyed with the scope.
 *
 * @since 0.1.0
 */
export const make = Effect.fnUntraced(function* (options: Options = {}) {
  let endpointLabel =
    options.region === undefined ? "sqs (default endpoint)" : `sqs.${options.region}.amazonaws.com:443`
  if (options.endpoint !== undefined) {
    let url: URL
    try {
      url = new URL(options.endpoint)
    } catch {
      return yield* new Errors.InvalidOption({ option: "endpoint", reason: "is not a valid URL" })
    }
    if (url.protocol === "http:" && options.allowInsecureEndpoint !== true) {
      return yield* new Errors.InvalidOption({
        option: "endpoint",
        reason: `refusing the insecure http:// endpoint ${url.host}; set allowInsecureEndpoint: true for a local emulator`
      })
    }
    if (url.protocol !== "http:" && url.protocol !== "https:") {
      return yield* new Errors.InvalidOption({ option: "endpoint", reason: "must be an https:// URL" })
    }
    if (url.username !== "" || url.password !== "") {
      return yield* new Errors.InvalidOption({ option: "endpoint", reason: `must not carry credentials (${url.host})` })
    }
    endpointLabel = hostPort(options.endpoint)
  }
  const maxMessageBytes = yield* positive("maxMessageBytes", options.maxMessageBytes, 262_144, 2048, 1_048_576)
  const maxBatchBytes = yield* positive("maxBatchBytes", options.maxBatchBytes, 262_144, 1024, 1_048_576)
  const sendConcurrency = yield* positive("sendConcurrency", options.sendConcurrency, 4, 1, 64)
  const entryAttempts = yield* positive("entryAttempts", options.entryAttempts, 5, 1, 20)
  const sdkMaxAttempts = yield* positive("sdkMaxAttempts", options.sdkMaxAttempts, 4, 1, 20)
  const deleteBatchWindow = yield* positive("deleteBatchWindow", options.deleteBatchWindow, 5, 0, 1000)
  const scanVisibilitySeconds = yield* positive("scanVisibilitySeconds", options.scanVisibilitySeconds, 30, 1, 43_200)
  if (options.redrivePolicy !== undefined) {
    yield* positive("redrivePolicy.maxReceiveCount", options.redrivePolicy.maxReceiveCount, 0, 1, 1000)
  }
  const build = () =>
    Effect.acquireRelease(
      Effect.sync(
        () =>
          new SQSClient({
            ...(options.region !== undefined ? { region: options.region } : {}),
            ...(options.endpoint !== undefined ? { endpoint: options.endpoint } : {}),
            ...(options.credentials !== undefined ? { credentials: options.credentials } : {}),
            maxAttempts: sdkMaxAttempts,
            retryMode: "standard",
            // resolve each command's middleware stack once, not on every call
            cacheMiddleware: true
          })
      ),
      (client) => Effect.sync(() => client.destroy())
    )
  const client = options.client ?? (yield* build())
  // Long polls carry an abort signal, and the SDK drops its whole middleware cache on any call
  // made with options: they get a client of their own, so sends and deletes keep theirs.
  const pollClient = options.client ?? (yield* build())
  const broker = internal.make({
    client,
    pollClient,
    endpointLabel,
    fifo: options.fifo === true,
    createQueues: options.createQueues ?? true,
    redrivePolicy: options.redrivePolicy,
    maxMessageBytes,
    maxBatchBytes,
    sendConcurrency,
    entryAttempts,
    deleteBatchWindow,
    scanVisibilitySeconds,
    queueAttributes: options.queueAttributes ?? {},
    escapeSupplementary: options.escapeSupplementary === true
  })
  return SqsBroker.of({ client, broker })
})

/**
 * A layer providing `SqsBroker` and core's `Broker.Broker`.
 *
 * @example
 * ```ts
 * import { SqsBroker } from "@errand/adapter-sqs"
 *
 * const BrokerLive = SqsBroker.layer({ region: "eu-west-1" })
 * const FifoLive = SqsBroker.layer({ region: "eu-west-1", fifo: true })
 * const Local = SqsBroker.layer({ endpoint: "http://127.0.0.1:4566", allowInsecureEndpoint: true, region: "us-east-1" })
 * ```
 *
 * @since 0.1.0
 */
export const layer = (options: Options = {}): Layer.Layer<SqsBroker | Broker.Broker, Errors.InvalidOption> =>
  Layer.effectContext(
    Effect.map(make(options), (service) =>
      Context.make(SqsBroker, service).pipe(Context.add(Broker.Broker, Broker.Broker.of(service.broker)))
    )
  )

/**
 * `layer` with its options read from `Config` (each field may be a `Config`).
 *
 * @example
 * ```ts
 * import { Config } from "effect"
 * import { SqsBroker } from "@errand/adapter-sqs"
 *
 * const BrokerLive = SqsBroker.layerConfig({ region: Config.String("AWS_REGION") })
 * ```
 *
 * @since 0.1.0
 */
export const layerConfig = (
  options: Config.Wrap<Omit<Options, "client" | "credentials">>
): Layer.Layer<SqsBroker | Broker.Broker, Errors.InvalidOption | Config.ConfigError> =>
  Layer.unwrap(Effect.map(Config.unwrap(options), (resolved) => layer(resolved as Options)))
