/**
 * @errand/adapter-sqs — Errand's broker for AWS SQS (standard and FIFO queues).
 *
 * @since 0.1.0
 */
export * as SqsBroker from "./SqsBroker.js"
