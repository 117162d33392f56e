/**
 * A Redis-backed `IdempotencyStore` that any Errand app can use with any broker (it needs only
 * ioredis). Each operation is one Lua script, so claims are atomic across processes and machines;
 * `complete` and `release` act only while the caller's token still holds the key.
 *
 * @example
 * ```ts
 * import { RedisIdempotencyStore } from "@errand/idempotency-redis"
 *
 * const IdempotencyLive = RedisIdempotencyStore.layer({ url: "redis://127.0.0.1:6379", prefix: "myapp" })
 * ```
 *
 * @since 0.1.0
 */
import { Errors, Idempotency, QueueName } from "@errand/core"
import { Config, Context, Effect, Layer, Option, type Redacted, type Scope } from "effect"
import type { Redis, RedisOptions } from "ioredis"
import { randomUUID } from "node:crypto"
import * as Connection from "./internal/connection.js"
import { toBrokerError } from "./internal/errors.js"

/**
 * Layer options. Give `url` or `connection` (ioredis options), not both.
 *
 * @since 0.1.0
 */
export interface Options {
  /** `redis://[user:password@]host:port[/db]` or `rediss://…`. Defaults to `redis://127.0.0.1:6379`. */
  readonly url?: string | Redacted.Redacted<string> | undefined
  /** ioredis connection options, instead of `url`. */
  readonly connection?: RedisOptions | undefined
  /** Key prefix (queue name rules; may be one hash tag such as `{errand}`). Default `errand`. */
  readonly prefix?: string | undefined
  /** Milliseconds before a command fails with `BrokerError { reason: "Timeout" }`. Default 5,000. */
  readonly commandTimeout?: number | undefined
  /** Milliseconds to wait for the first connection before the layer fails. Default 5,000. */
  readonly connectTimeout?: number | undefined
}

/**
 * Errors the layer can fail with while starting.
 *
 * @since 0.1.0
 */
export type LayerError = Errors.BrokerError | Errors.InvalidOption | Errors.InvalidQueueName

/**
 * The store plus what is specific to Redis.
 *
 * @since 0.1.0
 */
export interface RedisIdempotencyStoreShape extends Idempotency.IdempotencyStoreShape {
  /** The validated key prefix; keys are `<prefix>:idempotency:<key>`. */
  readonly prefix: string
  /** `host:port` of the Redis server. */
  readonly endpoint: string
}

/**
 * The Redis idempotency store tag. Its layers also provide core's `Idempotency.IdempotencyStore`.
 *
 * @since 0.1.0
 */
export class RedisIdempotencyStore extends Context.Service<RedisIdempotencyStore, RedisIdempotencyStoreShape>()(
  "@errand/idempotency-redis/RedisIdempotencyStore"
) {}

// Values are "held:<token>" or "done:<token>"; the TTL is the key's PX expiry.
const claimScript = `
local v = redis.call("GET", KEYS[1])
if v then
  if string.sub(v, 1, 5) == "done:" then return "done" end
  return "busy"
end
redis.call("SET", KEYS[1], "held:" .. ARGV[1], "PX", ARGV[2])
return "claimed"
`

const completeScript = `
local v = redis.call("GET", KEYS[1])
if v and string.sub(v, 6) ~= ARGV[1] then return 0 end
redis.call("SET", KEYS[1], "done:" .. ARGV[1], "PX", ARGV[2])
return 1
`

const releaseScript = `
if redis.call("GET", KEYS[1]) == "held:" .. ARGV[1] then
  redis.call("DEL", KEYS[1])
  return 1
end
return 0
`

const extendScript = `
if redis.call("GET", KEYS[1]) == "held:" .. ARGV[1] then
  redis.call("PEXPIRE", KEYS[1], ARGV[2])
  return 1
end
return 0
`

interface Scripts {
  errandIdempotencyExtend(key: string, token: string, ttl: string): Promise<number>
  errandIdempotencyClaim(key: string, token: string, ttl: string): Promise<string>
  errandIdempotencyComplete(key: string, token: string, ttl: string): Promise<number>
  errandIdempotencyRelease(key: string, token: string): Promise<number>
}

/** Redis PX wants a positive integer; an unbounded TTL is capped at ~100 years. */
const toPx = (ttl: number): string =>
  String(Number.isFinite(ttl) ? Math.max(1, Math.ceil(ttl)) : 100 * 365 * 24 * 3600 * 1000)

/**
 * Build the store in a scope (connects with a bounded wait; closes the connection on scope close).
 *
 * @since 0.1.0
 */
export const make = (options: Options = {}): Effect.Effect<RedisIdempotencyStoreShape, LayerError, Scope.Scope> =>
  Effect.gen(function* () {
    const prefix = options.prefix ?? "errand"
    const reason = QueueName.checkPrefix(prefix)
    if (reason !== undefined) return yield* new Errors.InvalidQueueName({ queue: prefix, reason })
    const commandTimeout = yield* Connection.positive("commandTimeout", options.commandTimeout, 5000)
    const connectTimeout = yield* Connection.positive("connectTimeout", options.connectTimeout, 5000)
    const resolved = yield* Connection.resolve(
      options.url === undefined && options.connection === undefined ? { url: "redis://127.0.0.1:6379" } : options
    )
    const endpoint = resolved.endpoint
    const client = yield* Effect.acquireRelease(
      Connection.connect(resolved, { commandTimeout, connectTimeout, name: `errand-idempotency@${prefix}` }),
      (c) => Connection.close(c)
    )
    client.defineCommand("errandIdempotencyClaim", { numberOfKeys: 1, lua: claimScript })
    client.defineCommand("errandIdempotencyComplete", { numberOfKeys: 1, lua: completeScript })
    client.defineCommand("errandIdempotencyRelease", { numberOfKeys: 1, lua: releaseScript })
    client.defineCommand("errandIdempotencyExtend", { numberOfKeys: 1, lua: extendScript })
    const scripts = client as Redis & Scripts
    const keyOf = (key: string) => `${prefix}:idempotency:${key}`
    const run = <A>(operation: string, f: () => Promise<A>) =>
      Effect.tryPromise({ try: f, catch: (error) => toBrokerError(error, operation, endpoint) })

    return RedisIdempotencyStore.of({
      prefix,
      endpoint,
      claim: (key, ttl) =>
        Effect.suspend(() => {
          const token = randomUUID()
          return run("idempotency.claim", () => scripts.errandIdempotencyClaim(keyOf(key), token, toPx(ttl))).pipe(
            Effect.map(
              (answer): Idempotency.ClaimResult =>
                answer === "claimed"
                  ? { _tag: "claimed", token }
                  : answer === "done"
                    ? { _tag: "done" }
                    : { _tag: "busy" }
            )
          )
        }),
      complete: (key, token, ttl) =>
        run("idempotency.complete", () => scripts.errandIdempotencyComplete(keyOf(key), token, toPx(ttl))).pipe(
          Effect.map((n) => n === 1)
        ),
      release: (key, token) =>
        run("idempotency.release", () => scripts.errandIdempotencyRelease(keyOf(key), token)).pipe(Effect.asVoid),
      extend: (key, token, ttl) =>
        run("idempotency.extend", () => scripts.errandIdempotencyExtend(keyOf(key), token, toPx(ttl))).pipe(
          Effect.map((n) => n === 1)
        )
    })
  })

/**
 * A layer providing both `RedisIdempotencyStore` and core's `Idempotency.IdempotencyStore`.
 *
 * @example
 * ```ts
 * const IdempotencyLive = RedisIdempotencyStore.layer({ url: process.env.REDIS_URL, prefix: "{errand}" })
 * ```
 *
 * @since 0.1.0
 */
export const layer = (
  options: Options = {}
): Layer.Layer<RedisIdempotencyStore | Idempotency.IdempotencyStore, LayerError> => {
  const own = Layer.effect(RedisIdempotencyStore, make(options))
  return Layer.effect(
    Idempotency.IdempotencyStore,
    Effect.map(RedisIdempotencyStore, (store): Idempotency.IdempotencyStoreShape => store)
  ).pipe(Layer.provideMerge(own))
}

/**
 * A layer reading `REDIS_URL` (default `redis://127.0.0.1:6379`) and `ERRAND_PREFIX` (default
 * `errand`) from `Config`, unless other configs are given.
 *
 * @since 0.1.0
 */
export const layerConfig = (
  config: {
    readonly url?: Config.Config<Redacted.Redacted<string>>
    readonly prefix?: Config.Config<string>
  } = {},
  options: Omit<Options, "url" | "connection" | "prefix"> = {}
): Layer.Layer<RedisIdempotencyStore | Idempotency.IdempotencyStore, LayerError | Config.ConfigError> =>
  Layer.unwrap(
    Effect.gen(function* () {
      const url = config.url ? Option.some(yield* config.url) : yield* Config.Redacted("REDIS_URL").pipe(Config.option)
      const prefix = yield* config.prefix ?? Config.String("ERRAND_PREFIX").pipe(Config.withDefault("errand"))
      return layer({ ...options, prefix, ...(Option.isSome(url) ? { url: url.value } : {}) })
    })
  )
