/**
 * Connection options and lifecycle, shared with `@errand/idempotency-redis` (one implementation of
 * URL parsing, the `host:port` label, bounded connect and close); plus the eviction-policy check,
 * which only a broker needs.
 *
 * @internal
 */
import type { Errors } from "@errand/core"
import { RedisConnection } from "@errand/idempotency-redis"
import { Effect } from "effect"
import type { Redis } from "ioredis"
import { toBrokerError } from "./errors.js"

export type ConnectionInput = RedisConnection.ConnectionInput
export type Resolved = RedisConnection.Resolved
export const { resolve, positive, retryStrategy, connect, close } = RedisConnection

/** Read `maxmemory-policy` with CONFIG GET, falling back to INFO where CONFIG is disabled. */
export const readEvictionPolicy = (
  client: Redis,
  endpoint: string
): Effect.Effect<string | undefined, Errors.BrokerError> =>
  Effect.tryPromise({
    try: async () => {
      try {
        const reply = (await client.call("CONFIG", "GET", "maxmemory-policy")) as Array<string>
        if (Array.isArray(reply) && typeof reply[1] === "string") return reply[1]
      } catch {
        // managed Redis often disables CONFIG: fall through to INFO
      }
      const info = await client.info("memory")
      const match = /^maxmemory_policy:(\S+)/mu.exec(info)
      return match ? match[1] : undefined
    },
    catch: (error) => toBrokerError(error, "checkEvictionPolicy", endpoint)
  })
