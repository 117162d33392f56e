/**
 * @errand/adapter-bullmq — Errand's broker contract on BullMQ (Redis).
 *
 * @since 0.1.0
 */
export * as BullMQBroker from "./BullMQBroker.js"
