import { Effect, Layer, Option } from "effect"
import { Broker, type Capabilities, type OutgoingMessage } from "../src/Broker.js"

/** A broker that records sends and delivers nothing: for checking what reaches the wire. */
export const recordingBroker = (capabilities: Partial<Capabilities> = {}) => {
  const sent: Array<{ queue: string; message: OutgoingMessage }> = []
  const layer = Layer.succeed(
    Broker,
    Broker.of({
      name: "recording",
      capabilities: {
        maxDelay: Number.POSITIVE_INFINITY,
        priorities: true,
        ordering: "none",
        deduplication: false,
        leaseExtension: false,
        maxPayloadBytes: 1024 * 1024,
        persistent: false,
        ...capabilities
      },
      validateQueueName: (queue) => (queue.endsWith(".bad") ? "ends in .bad" : undefined),
      send: (queue, messages) =>
        Effect.sync(() => {
          for (const message of messages) sent.push({ queue, message })
          return messages.map((m) => ({ id: m.id, duplicate: false }))
        }),
      take: () => Effect.succeed([]),
      deadLetters: {
        list: () => Effect.succeed([]),
        get: () => Effect.succeed(Option.none()),
        count: () => Effect.succeed(0),
        redrive: () => Effect.succeed(0),
        purge: () => Effect.succeed(0)
      },
      stats: () => Effect.succeed({ waiting: 0, active: 0, delayed: 0, dead: 0 }),
      deleteQueue: () => Effect.void
    })
  )
  return { sent, layer }
}
