/**
 * @errand/idempotency-redis — a Redis-backed `IdempotencyStore` for Errand, usable with any broker.
 *
 * @since 0.1.0
 */
export * as RedisIdempotencyStore from "./RedisIdempotencyStore.js"
export * as RedisConnection from "./RedisConnection.js"
