import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { RabbitMQBroker } from "../src/index.js"
import { message, takeAtLeast, uniqueQueue, url } from "./helpers.js"

describe("publish encoding", () => {
  // The adapter writes most publishes' frames itself and leaves the rest (headers, a body over one
  // frame) to amqplib: both must deliver the same bytes.
  it.live("bodies and ids of every size and kind arrive intact", () =>
    Effect.gen(function* () {
      const broker = yield* RabbitMQBroker.make({ url })
      const queue = uniqueQueue("encode")
      yield* Effect.addFinalizer(() => Effect.ignore(broker.deleteQueue(queue)))
      // RabbitMQ's default frame_max: a body of frame_max - 8 bytes is the largest in one frame
      const oneFrame = "y".repeat(131_072 - 8)
      const sent = [
        { ...message("empty"), body: "" },
        { ...message("ünïcødé-id-🙂"), body: JSON.stringify({ text: "héllo wörld 🙂 \u0000" }) },
        { ...message("one-frame"), body: oneFrame },
        { ...message("two-frames"), body: `${oneFrame}z` },
        { ...message("large"), body: "x".repeat(1_000_000) },
        message("priority", { priority: 7 }),
        message("group", { group: "g1" })
      ]
      yield* broker.send(queue, sent)
      const got = yield* takeAtLeast(broker, queue, sent.length)
      expect(got.map((d) => d.id).sort()).toEqual(sent.map((m) => m.id).sort())
      const bodies = new Map(got.map((d) => [d.id, d.body]))
      for (const m of sent) expect(bodies.get(m.id)).toBe(m.body)
      for (const d of got) yield* d.ack
    }).pipe(Effect.scoped)
  )
})
