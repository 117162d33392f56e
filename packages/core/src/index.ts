/**
 * @errand/core — a broker-agnostic, typed job queue on Effect: jobs, producer, worker, dead-letter
 * queue, scheduler, idempotency, metrics, and the broker contract adapters implement.
 *
 * @since 0.1.0
 */
export * as Broker from "./Broker.js"
export * as DeadLetters from "./DeadLetters.js"
export * as Envelope from "./Envelope.js"
export * as Errors from "./Errors.js"
export * as Idempotency from "./Idempotency.js"
export * as Job from "./Job.js"
export * as Metrics from "./Metrics.js"
export * as Producer from "./Producer.js"
export * as QueueName from "./QueueName.js"
export * as Queues from "./Queues.js"
export * as Scheduler from "./Scheduler.js"
export * as Worker from "./Worker.js"
