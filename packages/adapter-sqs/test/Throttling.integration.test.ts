import { createServer, request as httpRequest, type Server } from "node:http"
import type { AddressInfo } from "node:net"
import { describe, expect, it } from "@effect/vitest"
import { Broker } from "@errand/core"
import { Effect, Layer } from "effect"
import { afterAll, beforeAll } from "vitest"
import { SqsBroker } from "../src/index.js"
import * as Fauxqs from "./fauxqs.js"

let emulator: Fauxqs.Emulator
let proxy: Server
let proxyEndpoint: string
/** Per target operation, how many requests to answer with the given failure before forwarding. */
const faults = new Map<string, { remaining: number; status: number; type: string }>()
const seen = new Map<string, number>()

beforeAll(async () => {
  emulator = await Fauxqs.start()
  const upstream = new URL(emulator.endpoint)
  proxy = createServer((req, res) => {
    const target = String(req.headers["x-amz-target"] ?? "").replace("AmazonSQS.", "")
    seen.set(target, (seen.get(target) ?? 0) + 1)
    const fault = faults.get(target)
    const chunks: Array<Buffer> = []
    req.on("data", (c: Buffer) => chunks.push(c))
    req.on("end", () => {
      if (fault !== undefined && fault.remaining > 0) {
        fault.remaining--
        res.writeHead(fault.status, {
          "content-type": "application/x-amz-json-1.0",
          "x-amzn-query-error": `${fault.type};Sender`
        })
        res.end(JSON.stringify({ __type: `com.amazonaws.sqs#${fault.type}`, message: "Rate exceeded" }))
        return
      }
      const forward = httpRequest(
        { host: upstream.hostname, port: upstream.port, path: req.url, method: req.method, headers: req.headers },
        (up) => {
          res.writeHead(up.statusCode ?? 500, up.headers)
          up.pipe(res)
        }
      )
      forward.on("error", () => res.destroy())
      forward.end(Buffer.concat(chunks))
    })
  })
  await new Promise<void>((resolve) => proxy.listen(0, "127.0.0.1", resolve))
  proxyEndpoint = `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`
})
afterAll(async () => {
  await new Promise<void>((resolve) => proxy?.close(() => resolve()))
  await emulator?.stop()
})

const layer = (attempts: number) =>
  Layer.fresh(SqsBroker.layer({ ...Fauxqs.clientOptions(proxyEndpoint), sdkMaxAttempts: attempts }))

describe("throttling and 5xx", () => {
  it.live("throttled and 5xx calls are retried with backoff; the send is confirmed", () =>
    Effect.gen(function* () {
      const broker = yield* Broker.Broker
      const queue = Fauxqs.queueName("throttle")
      yield* Effect.gen(function* () {
        yield* broker.stats(queue) // resolve nothing yet
        seen.clear()
        faults.set("SendMessageBatch", { remaining: 2, status: 400, type: "ThrottlingException" })
        yield* broker.send(queue, [
          { id: "t1", body: "one", delay: 0, priority: 0 },
          { id: "t2", body: "two", delay: 0, priority: 0 }
        ])
        expect(seen.get("SendMessageBatch")).toBe(3)
        faults.set("ReceiveMessage", { remaining: 1, status: 500, type: "InternalFailure" })
        const got = yield* broker.take(queue, { max: 2, lease: 30_000, wait: 1000 })
        expect(got.length).toBe(2)
        expect(seen.get("ReceiveMessage")).toBe(2)
      }).pipe(Effect.ensuring(Effect.ignore(broker.deleteQueue(queue))))
    }).pipe(Effect.provide(layer(4)))
  )

  it.live("throttling that outlasts the retries fails with BrokerError Throttled", () =>
    Effect.gen(function* () {
      const broker = yield* Broker.Broker
      const queue = Fauxqs.queueName("throttle")
      yield* Effect.gen(function* () {
        yield* broker.send(queue, [{ id: "warm", body: "w", delay: 0, priority: 0 }])
        seen.clear()
        // a single message goes through SendMessage
        faults.set("SendMessage", { remaining: 100, status: 400, type: "ThrottlingException" })
        const error = yield* Effect.flip(broker.send(queue, [{ id: "t", body: "x", delay: 0, priority: 0 }]))
        faults.delete("SendMessage")
        expect(error).toMatchObject({ _tag: "BrokerError", reason: "Throttled", operation: "send" })
        expect(error.message).toContain("SendMessage")
        expect(error.isRetryable).toBe(true)
        expect(seen.get("SendMessage")).toBe(2)
        expect(error.message).not.toContain("test") // the static test credentials
      }).pipe(
        Effect.ensuring(Effect.sync(() => faults.clear())),
        Effect.ensuring(Effect.ignore(broker.deleteQueue(queue)))
      )
    }).pipe(Effect.provide(layer(2)))
  )
})
