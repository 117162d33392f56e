/**
 * A Redis `IdempotencyStore` shared by every worker process of a scenario. Used until
 * `@errand/idempotency-redis` exports its layer (see `store.ts`); same contract as core's memory
 * store: claim / complete / release, atomic through Lua.
 */
import { Errors, type Idempotency } from "@errand/core"
import { Effect } from "effect"
import type { Redis } from "ioredis"
import { randomUUID } from "node:crypto"

const claimScript = `
local v = redis.call('GET', KEYS[1])
if v then
  if string.sub(v, 1, 5) == 'done:' then return 'done' end
  return 'busy'
end
redis.call('SET', KEYS[1], 'held:' .. ARGV[1], 'PX', ARGV[2])
return 'claimed'`

const completeScript = `
local v = redis.call('GET', KEYS[1])
if v and v ~= ('held:' .. ARGV[1]) and v ~= ('done:' .. ARGV[1]) then return 0 end
redis.call('SET', KEYS[1], 'done:' .. ARGV[1], 'PX', ARGV[2])
return 1`

const releaseScript = `
if redis.call('GET', KEYS[1]) == ('held:' .. ARGV[1]) then redis.call('DEL', KEYS[1]) end
return 1`

const fail = (operation: string) => (error: unknown) =>
  new Errors.BrokerError({
    reason: "Connection",
    operation,
    message: `idempotency store: ${error instanceof Error ? error.message : String(error)}`.slice(0, 300)
  })

/** A store on an ioredis client; keys are prefixed with `prefix`. */
export const make = (redis: Redis, prefix: string): Idempotency.IdempotencyStoreShape => ({
  claim: (key, ttl) =>
    Effect.tryPromise({
      try: async (): Promise<Idempotency.ClaimResult> => {
        const token = randomUUID()
        const answer = await redis.eval(claimScript, 1, prefix + key, token, String(Math.max(1, Math.ceil(ttl))))
        return answer === "claimed" ? { _tag: "claimed", token } : answer === "done" ? { _tag: "done" } : { _tag: "busy" }
      },
      catch: fail("claim")
    }),
  complete: (key, token, ttl) =>
    Effect.tryPromise({
      try: async () =>
        (await redis.eval(completeScript, 1, prefix + key, token, String(Math.max(1, Math.ceil(ttl))))) === 1,
      catch: fail("complete")
    }),
  release: (key, token) =>
    Effect.tryPromise({
      try: async () => {
        await redis.eval(releaseScript, 1, prefix + key, token)
      },
      catch: fail("release")
    })
})
