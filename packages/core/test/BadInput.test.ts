import { describe, expect, it } from "@effect/vitest"
import { Effect, Layer, Schema } from "effect"
import * as Idempotency from "../src/Idempotency.js"
import * as Job from "../src/Job.js"
import * as Producer from "../src/Producer.js"
import * as Worker from "../src/Worker.js"
import { recordingBroker } from "./recordingBroker.js"

const Payload = Schema.Struct({ userId: Schema.String, count: Schema.Number })
const SendJob = Job.make("send", { queue: "emails", payload: Payload })

const failureOf = <A, E extends { _tag: string }, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.flip(effect) as Effect.Effect<E, A, R>

describe("bad input gets a typed answer and nothing is sent", () => {
  it.effect("payload the schema cannot encode → EncodeError", () => {
    const { sent, layer } = recordingBroker()
    return Effect.gen(function* () {
      const nan = yield* failureOf(Producer.enqueue(SendJob, { userId: "u", count: Number.NaN }))
      expect(nan._tag).toBe("EncodeError")
      const infinite = yield* failureOf(Producer.enqueue(SendJob, { userId: "u", count: Number.POSITIVE_INFINITY }))
      expect(infinite._tag).toBe("EncodeError")
      const wrongType = yield* failureOf(Producer.enqueue(SendJob, { userId: 1 as unknown as string, count: 1 }))
      expect(wrongType._tag).toBe("EncodeError")
      const Loose = Job.make("loose", { queue: "emails", payload: Schema.Unknown })
      const cyclic: Record<string, unknown> = {}
      cyclic.self = cyclic
      for (const payload of [10n, () => 1, cyclic, new Date(0), { a: [undefined] }, Symbol("s")]) {
        const error = yield* failureOf(Producer.enqueue(Loose, payload))
        expect(error._tag, String(typeof payload)).toBe("EncodeError")
      }
      expect(sent).toHaveLength(0)
    }).pipe(Effect.provide(Producer.layer.pipe(Layer.provide(layer))))
  })

  it.effect("more bytes than the broker's cap → PayloadTooLarge before any I/O", () => {
    const { sent, layer } = recordingBroker({ maxPayloadBytes: 1000 })
    return Effect.gen(function* () {
      const error = yield* failureOf(Producer.enqueue(SendJob, { userId: "x".repeat(2000), count: 1 }))
      expect(error._tag).toBe("PayloadTooLarge")
      if (error._tag === "PayloadTooLarge") {
        expect(error.limit).toBe(1000)
        expect(error.size).toBeGreaterThan(2000)
      }
      const batch = yield* failureOf(
        Producer.enqueueBatch(SendJob, [
          { payload: { userId: "ok", count: 1 } },
          { payload: { userId: "y".repeat(2000), count: 1 } }
        ])
      )
      expect(batch._tag).toBe("PayloadTooLarge")
      expect(sent).toHaveLength(0)
    }).pipe(Effect.provide(Producer.layer.pipe(Layer.provide(layer))))
  })

  it.effect("invalid queue names → InvalidQueueName (core's rules and the broker's)", () => {
    const { sent, layer } = recordingBroker()
    return Effect.gen(function* () {
      for (const queue of ["", "x".repeat(81), "a:b", "{q}", "a*b", "a?", "a[0]", "a b", "amq.gen", "ok.bad"]) {
        const job = Job.make("j", { queue, payload: Payload })
        const error = yield* failureOf(Producer.enqueue(job, { userId: "u", count: 1 }))
        expect(error._tag, queue).toBe("InvalidQueueName")
      }
      expect(sent).toHaveLength(0)
    }).pipe(Effect.provide(Producer.layer.pipe(Layer.provide(layer))))
  })

  it.effect("nonsense options → InvalidOption", () => {
    const { sent, layer } = recordingBroker()
    const payload = { userId: "u", count: 1 }
    return Effect.gen(function* () {
      const cases: ReadonlyArray<[string, Producer.EnqueueOptions]> = [
        ["delay", { delay: -1 }],
        ["delay", { delay: Number.NaN }],
        ["delay", { delay: Number.POSITIVE_INFINITY }],
        ["delay", { delay: "soon" as never }],
        ["attempts", { attempts: 0 }],
        ["attempts", { attempts: -3 }],
        ["attempts", { attempts: 1.5 }],
        ["priority", { priority: 10 }],
        ["priority", { priority: -1 }],
        ["timeout", { timeout: -5 }],
        ["idempotencyKey", { idempotencyKey: "" }],
        ["id", { id: "has:colon" }]
      ]
      for (const [option, options] of cases) {
        const error = yield* failureOf(Producer.enqueue(SendJob, payload, options))
        expect(error._tag, JSON.stringify(options)).toBe("InvalidOption")
        if (error._tag === "InvalidOption") expect(error.option).toBe(option)
      }
      const BadDefaults = Job.make("bad", { queue: "emails", payload: Payload, attempts: 0 })
      expect((yield* failureOf(Producer.enqueue(BadDefaults, payload)))._tag).toBe("InvalidOption")
      expect(sent).toHaveLength(0)
    }).pipe(Effect.provide(Producer.layer.pipe(Layer.provide(layer))))
  })

  it.effect("worker options are validated", () => {
    const { layer } = recordingBroker()
    const handler = Worker.handler(SendJob, () => Effect.void)
    return Effect.gen(function* () {
      const bad: ReadonlyArray<Partial<Worker.Options<never>>> = [
        { concurrency: 0 },
        { concurrency: 1.5 },
        { lease: -1 },
        { lease: 10 },
        { gracePeriod: Number.NaN },
        { rateLimit: { limit: 0, window: "1 second" } },
        { rateLimit: { limit: 1, window: 0 } },
        { idempotency: true }
      ]
      for (const options of bad) {
        const error = yield* failureOf(Effect.scoped(Worker.run({ queue: "emails", handlers: [handler], ...options })))
        expect(error._tag, JSON.stringify(options)).toBe("InvalidOption")
      }
      const other = Job.make("other", { queue: "elsewhere", payload: Payload })
      const mismatch = yield* failureOf(
        Effect.scoped(Worker.run({ queue: "emails", handlers: [Worker.handler(other, () => Effect.void)] }))
      )
      expect(mismatch._tag).toBe("InvalidOption")
    }).pipe(Effect.provide(layer))
  })

  it.effect("an idempotency key without native dedup or a store → UnsupportedCapability, nothing sent", () => {
    const { sent, layer } = recordingBroker({ deduplication: false })
    return Effect.gen(function* () {
      const error = yield* failureOf(Producer.enqueue(SendJob, { userId: "u", count: 1 }, { idempotencyKey: "k" }))
      expect(error._tag).toBe("UnsupportedCapability")
      expect(sent).toHaveLength(0)
    }).pipe(Effect.provide(Producer.layer.pipe(Layer.provide(layer))))
  })

  it.effect("with a store, a repeated idempotency key is sent once", () => {
    const { sent, layer } = recordingBroker({ deduplication: false })
    return Effect.gen(function* () {
      const first = yield* Producer.enqueue(SendJob, { userId: "u", count: 1 }, { idempotencyKey: "k" })
      const second = yield* Producer.enqueue(SendJob, { userId: "u", count: 2 }, { idempotencyKey: "k" })
      expect(first.duplicate).toBe(false)
      expect(second).toEqual({ id: first.id, duplicate: true })
      expect(sent).toHaveLength(1)
    }).pipe(Effect.provide(Producer.layer.pipe(Layer.provide(Layer.merge(layer, Idempotency.layerMemory)))))
  })
})
