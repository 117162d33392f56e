/**
 * @errand/core — the typed job queue API and the broker contract.
 *
 * @since 0.1.0
 */
export * as Broker from "./Broker.js"
export * as Envelope from "./Envelope.js"
export * as Errors from "./Errors.js"
export * as QueueName from "./QueueName.js"
export * as Idempotency from "./Idempotency.js"
