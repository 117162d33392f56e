import { Conformance } from "@errand/testing"
import { RabbitMQBroker } from "../src/index.js"
import { restartBroker, url } from "./helpers.js"

for (const queueType of ["classic", "quorum"] as const) {
  const options = { url, queueType }
  Conformance.run(`rabbitmq-${queueType}`, {
    layer: RabbitMQBroker.layer(options),
    capabilities: RabbitMQBroker.capabilitiesFor(options),
    // rabbitmqctl stop_app / start_app, then wait until the AMQP port accepts connections
    restart: { layer: RabbitMQBroker.layer(options), restart: restartBroker }
  })
}
