/**
 * The idempotency store: claim / complete / release with a TTL, so that a duplicate enqueue or a
 * duplicate delivery applies its effect once. Coordination goes through the store, never through
 * process memory, so N workers on M machines behave like one (given a shared store such as
 * `@errand/idempotency-redis`). The in-memory store here serves one process and tests.
 *
 * Limit: claim → effect → complete is not one transaction. A process killed after the handler's
 * effect landed and before `complete` reached the store leaves the claim to expire, and the job then
 * runs again. Make the effect itself idempotent per job id (an upsert, the payment API's own
 * idempotency key) where a second application would hurt.
 *
 * @since 0.1.0
 */
import { Clock, Context, Effect, Layer } from "effect"
import type { BrokerError } from "./Errors.js"

/**
 * The answer to a claim.
 * - `"claimed"`: you hold the key until `complete` or `release` (or the TTL runs out).
 * - `"busy"`: someone else holds it and has not finished.
 * - `"done"`: it was completed; do not apply the effect again.
 *
 * @since 0.1.0
 */
export type ClaimResult =
  | { readonly _tag: "claimed"; readonly token: string }
  | { readonly _tag: "busy" }
  | { readonly _tag: "done" }

/**
 * The store contract. Every method is atomic with respect to other callers of the same store.
 *
 * @since 0.1.0
 */
export interface IdempotencyStoreShape {
  /** Atomically claim `key` for `ttl` ms unless it is held or done. */
  readonly claim: (key: string, ttl: number) => Effect.Effect<ClaimResult, BrokerError>
  /** Mark `key` done for `ttl` ms, if `token` still holds it. Returns whether it did. */
  readonly complete: (key: string, token: string, ttl: number) => Effect.Effect<boolean, BrokerError>
  /** Drop the claim so another caller can try, if `token` still holds it. */
  readonly release: (key: string, token: string) => Effect.Effect<void, BrokerError>
  /**
   * Keep a held claim for `ttl` ms from now, if `token` still holds it (the worker renews claims
   * with leases, so a dead worker's claim lapses about when its lease does). Returns whether it did.
   */
  readonly extend: (key: string, token: string, ttl: number) => Effect.Effect<boolean, BrokerError>
}

/**
 * The idempotency store service.
 *
 * @since 0.1.0
 */
export class IdempotencyStore extends Context.Service<IdempotencyStore, IdempotencyStoreShape>()(
  "@errand/core/Idempotency/IdempotencyStore"
) {}

type Entry = { readonly state: "held" | "done"; readonly token: string; readonly expiresAt: number }

/**
 * An in-memory store for one process (and for tests). Expiry follows `Clock`, so `TestClock`
 * drives it.
 *
 * @since 0.1.0
 */
export const makeMemory: Effect.Effect<IdempotencyStoreShape> = Effect.sync(() => {
  const entries = new Map<string, Entry>()
  let counter = 0
  let lastSweep = 0
  const sweep = (now: number) => {
    if (now - lastSweep < 1000 && entries.size < 100_000) return
    lastSweep = now
    for (const [key, entry] of entries) if (entry.expiresAt <= now) entries.delete(key)
  }
  return {
    claim: (key, ttl) =>
      Effect.map(Clock.currentTimeMillis, (now): ClaimResult => {
        sweep(now)
        const entry = entries.get(key)
        if (entry && entry.expiresAt > now) return entry.state === "done" ? { _tag: "done" } : { _tag: "busy" }
        const token = `t${++counter}`
        entries.set(key, { state: "held", token, expiresAt: now + ttl })
        return { _tag: "claimed", token }
      }),
    complete: (key, token, ttl) =>
      Effect.map(Clock.currentTimeMillis, (now) => {
        const entry = entries.get(key)
        if (entry && entry.token !== token && entry.expiresAt > now) return false
        entries.set(key, { state: "done", token, expiresAt: now + ttl })
        return true
      }),
    release: (key, token) =>
      Effect.sync(() => {
        const entry = entries.get(key)
        if (entry && entry.state === "held" && entry.token === token) entries.delete(key)
      }),
    extend: (key, token, ttl) =>
      Effect.map(Clock.currentTimeMillis, (now) => {
        const entry = entries.get(key)
        if (!entry || entry.state !== "held" || entry.token !== token || entry.expiresAt <= now) return false
        entries.set(key, { state: "held", token, expiresAt: now + ttl })
        return true
      })
  }
})

/**
 * A layer with the in-memory store.
 *
 * @since 0.1.0
 */
export const layerMemory: Layer.Layer<IdempotencyStore> = Layer.effect(IdempotencyStore, makeMemory)
