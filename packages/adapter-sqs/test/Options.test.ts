import { describe, expect, it } from "@effect/vitest"
import { Broker } from "@errand/core"
import { Config, ConfigProvider, Effect, Exit, Layer } from "effect"
import { SqsBroker } from "../src/index.js"
import { chunk, messageSize, safeBody } from "../src/internal/batch.js"

const brokerOf = Effect.gen(function* () {
  return yield* Broker.Broker
})

describe("options", () => {
  it.live("refuses an http:// endpoint unless allowInsecureEndpoint", () =>
    Effect.gen(function* () {
      const exit = yield* Effect.exit(
        Effect.provide(
          brokerOf,
          Layer.fresh(SqsBroker.layer({ endpoint: "http://sqs.local:4566", region: "us-east-1" }))
        )
      )
      expect(Exit.isFailure(exit)).toBe(true)
      const error = yield* Effect.flip(
        Effect.provide(
          brokerOf,
          Layer.fresh(SqsBroker.layer({ endpoint: "http://sqs.local:4566", region: "us-east-1" }))
        )
      )
      expect(error).toMatchObject({ _tag: "InvalidOption", option: "endpoint" })
      expect(error.message).toContain("sqs.local:4566")
      const ok = yield* Effect.provide(
        brokerOf,
        Layer.fresh(
          SqsBroker.layer({ endpoint: "http://sqs.local:4566", allowInsecureEndpoint: true, region: "us-east-1" })
        )
      )
      expect(ok.name).toBe("sqs")
      const https = yield* Effect.provide(
        brokerOf,
        Layer.fresh(SqsBroker.layer({ endpoint: "https://sqs.eu-west-1.amazonaws.com", region: "eu-west-1" }))
      )
      expect(https.name).toBe("sqs")
    })
  )

  it.live("refuses an endpoint carrying credentials without echoing them", () =>
    Effect.gen(function* () {
      const error = yield* Effect.flip(
        Effect.provide(
          brokerOf,
          Layer.fresh(SqsBroker.layer({ endpoint: "https://key:secret@sqs.local", region: "x" }))
        )
      )
      expect(error._tag).toBe("InvalidOption")
      expect(error.message).not.toContain("secret")
    })
  )

  it.live("refuses nonsense numbers", () =>
    Effect.gen(function* () {
      const error = yield* Effect.flip(
        Effect.provide(brokerOf, Layer.fresh(SqsBroker.layer({ region: "x", maxMessageBytes: 5_000_000 })))
      )
      expect(error).toMatchObject({ _tag: "InvalidOption", option: "maxMessageBytes" })
    })
  )

  it("declares capabilities per queue type", () => {
    expect(SqsBroker.capabilities()).toEqual({
      maxDelay: 900_000,
      priorities: false,
      ordering: "none",
      deduplication: false,
      leaseExtension: true,
      maxPayloadBytes: 262_144 - 1024,
      persistent: true
    })
    expect(SqsBroker.capabilities({ fifo: true })).toMatchObject({
      maxDelay: 0,
      ordering: "per-group",
      deduplication: true
    })
    expect(SqsBroker.capabilities({ maxMessageBytes: 1_048_576 }).maxPayloadBytes).toBe(1_048_576 - 1024)
  })
})

describe("queue names", () => {
  it("applies SQS's rules and the FIFO suffix", () => {
    expect(SqsBroker.validateQueueName("jobs")).toBeUndefined()
    expect(SqsBroker.validateQueueName("jobs_1-a")).toBeUndefined()
    expect(SqsBroker.validateQueueName("a".repeat(80))).toBeUndefined()
    expect(SqsBroker.validateQueueName("a".repeat(81))).toMatch(/80/u)
    expect(SqsBroker.validateQueueName("jobs.v2")).toMatch(/letters, digits/u)
    expect(SqsBroker.validateQueueName("jobs.fifo")).toMatch(/fifo: true/u)
    expect(SqsBroker.validateQueueName("jobs", { fifo: true })).toMatch(/\.fifo/u)
    expect(SqsBroker.validateQueueName("jobs.fifo", { fifo: true })).toBeUndefined()
    expect(SqsBroker.validateQueueName(".fifo", { fifo: true })).toBeDefined()
    expect(SqsBroker.validateQueueName("jobs-dlq")).toMatch(/reserved/u)
    expect(SqsBroker.validateQueueName("jobs-dlq.fifo", { fifo: true })).toMatch(/reserved/u)
    expect(SqsBroker.validateQueueName(`${"a".repeat(75)}.fifo`, { fifo: true })).toBeUndefined()
  })

  it("names dead-letter queues within 80 characters, uniquely", () => {
    expect(SqsBroker.deadLetterQueueName("jobs")).toBe("jobs-dlq")
    expect(SqsBroker.deadLetterQueueName("jobs.fifo")).toBe("jobs-dlq.fifo")
    const long1 = SqsBroker.deadLetterQueueName("a".repeat(80))
    const long2 = SqsBroker.deadLetterQueueName(`${"a".repeat(79)}b`)
    const longFifo = SqsBroker.deadLetterQueueName(`${"a".repeat(75)}.fifo`)
    for (const name of [long1, long2, longFifo]) expect(name.length).toBeLessThanOrEqual(80)
    expect(long1).not.toBe(long2)
    expect(longFifo.endsWith("-dlq.fifo")).toBe(true)
    // valid for SQS, and reserved: no user queue can take a dead-letter queue's name
    for (const name of [long1, longFifo]) expect(name).toMatch(/^[A-Za-z0-9_-]+-dlq(\.fifo)?$/u)
    expect(SqsBroker.validateQueueName(long1)).toMatch(/reserved/u)
  })

  it("the broker's validateQueueName follows the layer's fifo option", () =>
    Effect.runPromise(
      Effect.gen(function* () {
        const broker = yield* Broker.Broker
        expect(broker.validateQueueName("jobs")).toMatch(/\.fifo/u)
        expect(broker.validateQueueName("jobs.fifo")).toBeUndefined()
        expect(broker.capabilities.ordering).toBe("per-group")
      }).pipe(Effect.provide(Layer.fresh(SqsBroker.layer({ region: "us-east-1", fifo: true }))))
    ))
})

describe("batching helpers", () => {
  it("splits by count and bytes", () => {
    expect(
      chunk(
        Array.from({ length: 25 }, () => 1),
        1000
      ).map((b) => b.length)
    ).toEqual([10, 10, 5])
    expect(chunk([60, 60, 60, 200, 10], 128)).toEqual([[0, 1], [2], [3], [4]])
    expect(chunk([], 100)).toEqual([])
  })

  it("counts attributes in the message size", () => {
    expect(messageSize("héllo", undefined)).toBe(6)
    expect(messageSize("x", { "errand-id": { DataType: "String", StringValue: "abc" } })).toBe(1 + 9 + 6 + 3)
  })
})

describe("message bodies", () => {
  it("escapes what SQS refuses, keeping the JSON value; leaves clean bodies untouched", () => {
    const value = { text: "a\uffff b\ufffe c 🎉 \u2028 d" }
    const body = JSON.stringify(value)
    const safe = safeBody(body, false)
    expect(safe).not.toMatch(/[\ufffe\uffff]/u)
    expect(safe).toContain("🎉")
    expect(JSON.parse(safe)).toEqual(value)
    const emulator = safeBody(body, true)
    expect(emulator).not.toContain("🎉")
    expect(emulator).toContain("\\ud83c\\udf89")
    expect(JSON.parse(emulator)).toEqual(value)
    const clean = JSON.stringify({ text: "héllo \u0000 wörld" })
    expect(safeBody(clean, true)).toBe(clean)
  })
})

describe("layerConfig", () => {
  it.live("reads the options from Config", () =>
    Effect.gen(function* () {
      const broker = yield* brokerOf
      expect(broker.capabilities.ordering).toBe("per-group")
      expect(broker.capabilities.maxPayloadBytes).toBe(1_048_576 - 1024)
      expect(broker.validateQueueName("jobs.fifo")).toBeUndefined()
    }).pipe(
      Effect.provide(
        SqsBroker.layerConfig({
          region: Config.String("SQS_REGION"),
          fifo: Config.Boolean("SQS_FIFO"),
          maxMessageBytes: Config.Int("SQS_MAX_MESSAGE_BYTES")
        }).pipe(
          Layer.provide(
            ConfigProvider.layer(
              ConfigProvider.fromUnknown({
                SQS_REGION: "eu-west-1",
                SQS_FIFO: "true",
                SQS_MAX_MESSAGE_BYTES: "1048576"
              })
            )
          ),
          Layer.fresh
        )
      )
    )
  )
})
