/**
 * @errand/adapter-rabbitmq — Errand's broker on RabbitMQ through amqplib.
 *
 * @since 0.1.0
 */
export * as RabbitMQBroker from "./RabbitMQBroker.js"
