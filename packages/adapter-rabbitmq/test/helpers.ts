import type { Broker } from "@errand/core"
import { execFile } from "node:child_process"
import * as net from "node:net"
import { expect } from "@effect/vitest"
import { Effect, Exit } from "effect"
import { RabbitMQBroker } from "../src/index.js"

/** The broker under test (overridable with AMQP_URL). */
export const url = process.env["AMQP_URL"] ?? RabbitMQBroker.defaultUrl

let counter = 0
/** A queue name unique to this run and test. */
export const uniqueQueue = (label: string): string =>
  `rmq-${label}-${process.pid}-${Date.now().toString(36)}-${(counter++).toString(36)}`

/** A message for `send`. */
export const message = (id: string, extra: Partial<Broker.OutgoingMessage> = {}): Broker.OutgoingMessage => ({
  id,
  body: JSON.stringify({ id }),
  delay: 0,
  priority: 0,
  ...extra
})

/** Take until `count` deliveries arrived or `timeout` ms passed. */
export const takeAtLeast = (
  broker: Broker.BrokerShape,
  queue: string,
  count: number,
  timeout = 10_000
): Effect.Effect<Array<Broker.Delivery>, unknown> =>
  Effect.gen(function* () {
    const deadline = Date.now() + timeout
    const all: Array<Broker.Delivery> = []
    while (all.length < count && Date.now() < deadline) {
      const got = yield* broker.take(queue, { max: count - all.length, lease: 30_000, wait: 200 })
      all.push(...got)
    }
    return all
  })

/** Poll `check` until it holds (or fail after `timeout` ms). */
export const eventually = <A>(
  effect: Effect.Effect<A, unknown>,
  check: (value: A) => boolean,
  timeout = 15_000
): Effect.Effect<A, unknown> =>
  Effect.gen(function* () {
    const deadline = Date.now() + timeout
    for (;;) {
      const value = yield* effect
      if (check(value)) return value
      if (Date.now() > deadline)
        return yield* Effect.fail(new Error(`condition not met within ${timeout} ms: ${JSON.stringify(value)}`))
      yield* Effect.sleep(100)
    }
  })

const run = (command: string, args: ReadonlyArray<string>): Promise<string> =>
  new Promise((resolve, reject) =>
    execFile(command, [...args], { timeout: 120_000 }, (error, stdout, stderr) =>
      error ? reject(new Error(`${command} ${args.join(" ")}: ${stderr || error.message}`)) : resolve(stdout)
    )
  )

/** Run `rabbitmqctl` with arguments. */
export const rabbitmqctl = (...args: ReadonlyArray<string>): Effect.Effect<string, unknown> =>
  Effect.tryPromise(() => run("rabbitmqctl", args))

const portOpen = (host: string, port: number): Promise<boolean> =>
  new Promise((resolve) => {
    const socket = net.connect({ host, port })
    socket.once("connect", () => {
      socket.destroy()
      resolve(true)
    })
    socket.once("error", () => resolve(false))
  })

/** Wait until the AMQP port accepts connections again. */
export const waitConnectable = Effect.promise(async () => {
  const parsed = new URL(url)
  const port = Number(parsed.port || "5672")
  const deadline = Date.now() + 60_000
  while (Date.now() < deadline) {
    if (await portOpen(parsed.hostname, port)) return
    await new Promise((resolve) => setTimeout(resolve, 200))
  }
})

/** `rabbitmqctl stop_app` then `start_app`, then wait until connectable. */
export const restartBroker: Effect.Effect<void, unknown> = Effect.gen(function* () {
  yield* rabbitmqctl("stop_app")
  yield* rabbitmqctl("start_app")
  yield* rabbitmqctl("await_startup")
  yield* waitConnectable
})

/**
 * What `RabbitMQBroker.make(options)` fails with, asserting that it fails. Against port 1, so a
 * failure from a connection attempt would show as a Connection error instead of an option check.
 */
export const failureOfMake = (
  options: RabbitMQBroker.Options
): Effect.Effect<{ readonly message: string } | undefined> =>
  Effect.gen(function* () {
    const exit = yield* Effect.exit(
      Effect.scoped(RabbitMQBroker.make({ url: "amqp://guest:guest@127.0.0.1:1", ...options }))
    )
    expect(Exit.isFailure(exit)).toBe(true)
    const reason = Exit.isFailure(exit) ? exit.cause.reasons.find((r) => r._tag === "Fail") : undefined
    expect(reason?._tag).toBe("Fail")
    return reason?._tag === "Fail" ? reason.error : undefined
  })
