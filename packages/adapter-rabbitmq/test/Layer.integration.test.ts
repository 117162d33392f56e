import { Broker } from "@errand/core"
import { describe, expect, it } from "@effect/vitest"
import { Config, ConfigProvider, Effect, Layer } from "effect"
import { RabbitMQBroker } from "../src/index.js"
import { rabbitmqctl, url } from "./helpers.js"

const ConfigProviderUrl = Config.String("AMQP_URL")
const ConfigDelay = Config.Number("RES")
const ConfigTiers = Config.Number("TIERS")

describe("layers", () => {
  it.live("layer provides both the adapter's tag and core's Broker", () =>
    Effect.gen(function* () {
      const own = yield* RabbitMQBroker.RabbitMQBroker
      const core = yield* Broker.Broker
      expect(core.name).toBe("rabbitmq")
      expect(core).toBe(own)
      expect(core.capabilities).toEqual(RabbitMQBroker.capabilitiesFor({ queueType: "quorum" }))
      expect(own.endpoint).toBe(`${new URL(url).hostname}:${new URL(url).port || "5672"}`)
    }).pipe(Effect.provide(RabbitMQBroker.layer({ url, queueType: "quorum" })))
  )

  it.live("connections use a 10 s heartbeat unless the URL sets one", () =>
    Effect.gen(function* () {
      const name = `errand-heartbeat-${Date.now()}`
      yield* RabbitMQBroker.make({ url, connectionName: name })
      const listing = yield* rabbitmqctl("list_connections", "client_properties", "timeout")
      const line = listing.split("\n").find((l) => l.includes(name))
      expect(line?.trim().endsWith("10")).toBe(true)
    }).pipe(Effect.scoped)
  )

  it.live("layerConfig reads its options from Config", () =>
    Effect.gen(function* () {
      const broker = yield* Broker.Broker
      expect(broker.capabilities.priorities).toBe(true)
      expect(broker.capabilities.maxDelay).toBe(50 * (2 ** 4 - 1))
    }).pipe(
      Effect.provide(
        RabbitMQBroker.layerConfig({
          url: ConfigProviderUrl,
          delayResolution: ConfigDelay,
          delayTiers: ConfigTiers
        }).pipe(Layer.provide(ConfigProvider.layer(ConfigProvider.fromUnknown({ AMQP_URL: url, RES: 50, TIERS: 4 }))))
      )
    )
  )
})
