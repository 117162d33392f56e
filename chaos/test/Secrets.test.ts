/**
 * Secrets: connect each adapter with a wrong password (or secret key) holding a unique canary,
 * run a producer and a worker, and capture everything an operator could see — every Effect log
 * (a custom Logger at level All), every span with its attributes, events, links and exit (a
 * custom Tracer), the errors and their causes, and anything written to stdout/stderr. The canary
 * must appear nowhere, and the capture must show the failure (so the test can fail).
 */
import { describe, expect, it } from "@effect/vitest"
import { Producer, Worker } from "@errand/core"
import { RedisIdempotencyStore } from "@errand/idempotency-redis"
import { Cause, Effect, Exit, Layer, Logger, References, Tracer } from "effect"
import { buildApp } from "fauxqs"
import { randomUUID } from "node:crypto"
import type { AddressInfo } from "node:net"
import { inspect } from "node:util"
import { type AdapterConfig, brokerLayer } from "../src/internal/adapters.js"
import { chaosJob } from "../src/internal/harness.js"
import { freePort, startRedis } from "../src/internal/processes.js"
import { selected } from "./brokers.js"

const show = (value: unknown) => {
  let json = ""
  try {
    json = JSON.stringify(value)
  } catch {
    // cycles
  }
  return `${inspect(value, { depth: 12, showHidden: true, getters: true })}\n${json}\n${String(value)}`
}

/** Run `program` with a logger, a tracer and stdout/stderr all captured; return the capture. */
const capture = async (program: Effect.Effect<unknown, unknown, never>) => {
  const lines: Array<string> = []
  const spans: Array<Tracer.Span> = []
  const logger = Logger.make((options) => {
    lines.push(`LOG ${options.logLevel} ${show(options.message)} ${Cause.pretty(options.cause)} ${show(options.cause)}`)
  })
  const tracer = Tracer.make({
    span(options) {
      const span = new Tracer.NativeSpan(options)
      spans.push(span)
      return span
    }
  })
  const writes: Array<string> = []
  const out = process.stdout.write.bind(process.stdout)
  const err = process.stderr.write.bind(process.stderr)
  const tap =
    (original: typeof out) =>
    (chunk: unknown, ...rest: Array<unknown>): boolean => {
      writes.push(String(chunk))
      return (original as (c: unknown, ...r: Array<unknown>) => boolean)(chunk, ...rest)
    }
  process.stdout.write = tap(out) as typeof process.stdout.write
  process.stderr.write = tap(err) as typeof process.stderr.write
  let exit: Exit.Exit<unknown, unknown>
  try {
    exit = await Effect.runPromiseExit(
      program.pipe(
        Effect.withTracer(tracer),
        Effect.provide(Logger.layer([logger])),
        Effect.provideService(References.MinimumLogLevel, "All")
      )
    )
  } finally {
    process.stdout.write = out
    process.stderr.write = err
  }
  const spanText = spans.map(
    (s) =>
      `SPAN ${s.name} ${show([...s.attributes])} ${show((s as unknown as { _events?: unknown })._events)} ${show(s.links.map((l) => l.attributes))} ${show(s.status)}`
  )
  const exitText = Exit.isFailure(exit) ? `EXIT ${Cause.pretty(exit.cause)} ${show(exit.cause)}` : "EXIT success"
  return {
    text: [...lines, ...spanText, exitText, ...writes].join("\n"),
    exit,
    spans: spans.length,
    logs: lines.length
  }
}

/** Enqueue one job and run a worker for a moment, each bounded so an endless reconnect cannot hang the test. */
const exercise = (config: AdapterConfig) => {
  const queue = `chaos-secrets-${randomUUID().slice(0, 8)}`
  const job = chaosJob(queue, 1)
  return Effect.gen(function* () {
    const enqueued = yield* Effect.exit(
      Producer.enqueue(job, { ms: 0, poison: false }).pipe(Effect.timeout("8 seconds"))
    )
    yield* Worker.run({
      queue,
      handlers: [Worker.handler(job, () => Effect.void)],
      concurrency: 1,
      pollWait: 200,
      lease: 5000
    })
    yield* Effect.sleep("2 seconds")
    if (Exit.isFailure(enqueued)) return yield* Effect.failCause(enqueued.cause)
  }).pipe(
    Effect.provide(Producer.layer.pipe(Layer.provideMerge(brokerLayer(config)))),
    Effect.scoped,
    Effect.timeout("20 seconds"),
    Effect.withSpan("chaos.secrets")
  )
}

const expectClean = (captured: { text: string }, canary: string, endpoint: string) => {
  expect(captured.text.includes(canary), "canary found in logs, spans, errors or output").toBe(false)
  expect(captured.text.includes(encodeURIComponent(canary))).toBe(false)
  // the failure was captured, with where it happened
  expect(captured.text).toContain(endpoint)
}

describe("no secret in any error, log or span", () => {
  const canary = `canary${randomUUID().replace(/-/g, "")}`

  if (!selected.some((kind) => kind !== "memory")) {
    it.skip("MemoryBroker has no connection and no credentials: nothing to leak", () => {})
  }

  if (selected.includes("bullmq")) {
    it("bullmq + idempotency-redis: wrong password on a Redis with requirepass, and a closed port", async () => {
      const redis = await startRedis(["--requirepass", "the-right-one"], "the-right-one")
      try {
        const endpoint = `127.0.0.1:${redis.port}`
        const wrong = await capture(
          exercise({ kind: "bullmq", url: `redis://:${canary}@${endpoint}`, prefix: "chaos-secrets" })
        )
        expect(Exit.isFailure(wrong.exit)).toBe(true)
        expectClean(wrong, canary, endpoint)
        const withUser = await capture(
          exercise({ kind: "bullmq", url: `redis://default:${canary}@${endpoint}`, prefix: "chaos-secrets" })
        )
        expect(Exit.isFailure(withUser.exit)).toBe(true)
        expectClean(withUser, canary, endpoint)
        // the idempotency store every worker process shares
        const store = await capture(
          Effect.gen(function* () {
            const s = yield* RedisIdempotencyStore.RedisIdempotencyStore
            yield* s.claim("k", 1000)
          }).pipe(Effect.provide(RedisIdempotencyStore.layer({ url: `redis://:${canary}@${endpoint}` })))
        )
        expect(Exit.isFailure(store.exit)).toBe(true)
        expectClean(store, canary, endpoint)
        const port = await freePort()
        const closed = await capture(
          exercise({ kind: "bullmq", url: `redis://:${canary}@127.0.0.1:${port}`, prefix: "chaos-secrets" })
        )
        expect(Exit.isFailure(closed.exit)).toBe(true)
        expectClean(closed, canary, `127.0.0.1:${port}`)
      } finally {
        await redis.stop()
      }
    })
  }

  if (selected.includes("rabbitmq")) {
    it("rabbitmq: wrong password, and a closed port", async () => {
      const wrong = await capture(exercise({ kind: "rabbitmq", url: `amqp://guest:${canary}@127.0.0.1:5672` }))
      expect(Exit.isFailure(wrong.exit)).toBe(true)
      expectClean(wrong, canary, "127.0.0.1:5672")
      const port = await freePort()
      const closed = await capture(exercise({ kind: "rabbitmq", url: `amqp://guest:${canary}@127.0.0.1:${port}` }))
      expect(Exit.isFailure(closed.exit)).toBe(true)
      expectClean(closed, canary, `127.0.0.1:${port}`)
    })
  }

  if (selected.includes("sqs")) {
    it("sqs: a canary secret key against fauxqs (accepts any), and against a closed port", async () => {
      const app = buildApp({ logger: false })
      await app.listen({ port: 0, host: "127.0.0.1" })
      try {
        const { port } = app.server.address() as AddressInfo
        // fauxqs does not check signatures: the run succeeds, and still nothing may show the secret
        const ok = await capture(
          exercise({ kind: "sqs", endpoint: `http://127.0.0.1:${port}`, accessKeyId: "chaos", secretAccessKey: canary })
        )
        expect(ok.text.includes(canary)).toBe(false)
        expect(ok.spans).toBeGreaterThan(0)
      } finally {
        await app.close()
      }
      const closedPort = await freePort()
      const closed = await capture(
        exercise({
          kind: "sqs",
          endpoint: `http://127.0.0.1:${closedPort}`,
          accessKeyId: "chaos",
          secretAccessKey: canary
        })
      )
      expect(Exit.isFailure(closed.exit)).toBe(true)
      expectClean(closed, canary, `127.0.0.1:${closedPort}`)
    })
  }
})
