/**
 * Connection options: URL or ioredis options in, validated ioredis options and a safe
 * `host:port` label out; connecting with a bounded wait.
 *
 * @internal
 */
import { Errors } from "@errand/core"
import { Effect, Redacted } from "effect"
import { Redis, type RedisOptions } from "ioredis"
import { toBrokerError } from "./errors.js"

/** What a user may pass to reach Redis. */
export interface ConnectionInput {
  readonly url?: string | Redacted.Redacted<string> | undefined
  readonly connection?: RedisOptions | undefined
}

/** Validated connection settings. */
export interface Resolved {
  readonly options: RedisOptions
  /** `host:port`, the only thing about the server that errors and logs show. */
  readonly endpoint: string
}

const invalid = (option: string, reason: string) => new Errors.InvalidOption({ option, reason })

/** Turn a URL or options into ioredis options, refusing malformed input. */
export const resolve = (input: ConnectionInput): Effect.Effect<Resolved, Errors.InvalidOption> =>
  Effect.suspend(() => {
    if (input.url !== undefined && input.connection !== undefined) {
      return Effect.fail(invalid("url", "give either url or connection, not both"))
    }
    if (input.url !== undefined) {
      const raw = Redacted.isRedacted(input.url) ? Redacted.value(input.url) : input.url
      let url: URL
      try {
        url = new URL(raw)
      } catch {
        return Effect.fail(invalid("url", "not a valid URL (expected redis://host:port/db)"))
      }
      if (url.protocol !== "redis:" && url.protocol !== "rediss:") {
        return Effect.fail(
          invalid("url", `unsupported scheme "${url.protocol.slice(0, 20)}" (expected redis: or rediss:)`)
        )
      }
      const host = url.hostname.replace(/^\[|\]$/gu, "") || "127.0.0.1"
      const port = url.port === "" ? 6379 : Number(url.port)
      if (!Number.isInteger(port) || port <= 0 || port > 65535) return Effect.fail(invalid("url", "invalid port"))
      const dbText = url.pathname.replace(/^\//u, "")
      const db = dbText === "" ? 0 : Number(dbText)
      if (!Number.isInteger(db) || db < 0) return Effect.fail(invalid("url", "the path must be a database number"))
      const options: RedisOptions = {
        host,
        port,
        db,
        ...(url.username ? { username: decodeURIComponent(url.username) } : {}),
        ...(url.password ? { password: decodeURIComponent(url.password) } : {}),
        ...(url.protocol === "rediss:" ? { tls: {} } : {})
      }
      return Effect.succeed({ options, endpoint: `${host}:${port}` })
    }
    const options: RedisOptions = { ...input.connection }
    if ((options as { keyPrefix?: unknown }).keyPrefix) {
      return Effect.fail(invalid("connection.keyPrefix", "use the prefix option instead of an ioredis keyPrefix"))
    }
    const host = options.host ?? "127.0.0.1"
    const port = options.port ?? 6379
    if (!Number.isInteger(port) || port <= 0 || port > 65535)
      return Effect.fail(invalid("connection.port", "invalid port"))
    return Effect.succeed({
      options: { ...options, host, port },
      endpoint: options.path ? "unix-socket" : `${host}:${port}`
    })
  })

/** Positive finite number, or an `InvalidOption`. */
export const positive = (option: string, value: number | undefined, fallback: number) =>
  value === undefined
    ? Effect.succeed(fallback)
    : Number.isFinite(value) && value > 0
      ? Effect.succeed(value)
      : Effect.fail(invalid(option, `must be a positive finite number (got ${String(value)})`))

/** Reconnect forever, backing off to at most two seconds, so workers resume by themselves. */
export const retryStrategy = (times: number): number => Math.min(50 * 2 ** Math.min(times, 6), 2000)

/**
 * Open a client that never buffers commands while disconnected (they fail at once with a
 * `Connection` error) and times commands out after `commandTimeout`. Waits at most
 * `connectTimeout` for the first connection.
 */
export const connect = (
  resolved: Resolved,
  settings: { readonly commandTimeout: number; readonly connectTimeout: number; readonly name: string }
): Effect.Effect<Redis, Errors.BrokerError> =>
  Effect.tryPromise({
    try: async () => {
      const { replyMapping: _ignored, ...base } = resolved.options
      // BullMQ expects ioredis' default ("legacy") reply mapping.
      const client = new Redis({
        ...base,
        connectionName: settings.name,
        lazyConnect: true,
        enableOfflineQueue: false,
        maxRetriesPerRequest: 0,
        commandTimeout: settings.commandTimeout,
        connectTimeout: settings.connectTimeout,
        retryStrategy
      })
      // ioredis reports every reconnect attempt as an "error" event; the failing commands carry
      // the error to their callers, so the events themselves are not needed.
      client.on("error", () => {})
      let timer: ReturnType<typeof setTimeout> | undefined
      try {
        await Promise.race([
          client.connect(),
          new Promise((_, reject) => {
            timer = setTimeout(
              () => reject(Object.assign(new Error("connect timed out"), { code: "ETIMEDOUT" })),
              settings.connectTimeout
            )
          })
        ])
      } catch (error) {
        client.disconnect()
        throw error
      } finally {
        if (timer) clearTimeout(timer)
      }
      return client
    },
    catch: (error) => toBrokerError(error, "connect", resolved.endpoint)
  })

/** Close a client politely, and force it if the server does not answer in time. */
export const close = (client: Redis, timeout = 2000): Effect.Effect<void> =>
  Effect.promise(async () => {
    if (client.status === "end") return
    let timer: ReturnType<typeof setTimeout> | undefined
    try {
      await Promise.race([client.quit().catch(() => undefined), new Promise((r) => (timer = setTimeout(r, timeout)))])
    } finally {
      if (timer) clearTimeout(timer)
      client.disconnect()
    }
  })
