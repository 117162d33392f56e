/**
 * `--calls`: count what each side asks of its broker, per job. In-process and client-side, so it
 * does not depend on the (shared, loaded) machine: Redis commands (ioredis `sendCommand`), AMQP
 * methods and publishes (amqplib), SQS API operations (`SQSClient.send`), and socket writes per
 * broker port, as sent to the socket handle (a pipeline, a batch or writes held together by `cork`
 * are one write). Sides run one at a time, so a counter's change
 * during a run belongs to that run.
 */
import { createRequire } from "node:module"
import * as net from "node:net"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"

const counts = new Map<string, number>()
const bump = (key: string, by = 1) => counts.set(key, (counts.get(key) ?? 0) + by)

let installed = false

/** Patch the clients' prototypes (once). Call before any connection is made. */
export const install = async (): Promise<void> => {
  if (installed) return
  installed = true
  // What reaches the socket handle (about one system call each): Node's `_writeGeneric`, which
  // `_write` and `_writev` both call, so writes held by `cork` or queued behind a pending write
  // count once, as they are sent. Falls back to counting `write` calls if Node's internals differ.
  const proto = net.Socket.prototype as unknown as Record<string, (...a: Array<any>) => unknown>
  const method = typeof proto["_writeGeneric"] === "function" ? "_writeGeneric" : "write"
  const write = proto[method]!
  proto[method] = function (this: net.Socket, ...args: Array<any>) {
    bump(`socket writes to :${this.remotePort ?? "?"}`)
    return write.apply(this, args)
  }

  const { Redis } = await import("ioredis")
  const sendCommand = Redis.prototype.sendCommand
  Redis.prototype.sendCommand = function (this: unknown, command: { name: string }, ...rest: Array<any>) {
    bump(`redis ${command.name}`)
    return (sendCommand as (...a: Array<any>) => unknown).call(this, command, ...rest)
  } as typeof sendCommand

  const require = createRequire(import.meta.url)
  const amqplibDir = dirname(fileURLToPath(import.meta.resolve("amqplib")))
  const { Connection } = require(join(amqplibDir, "lib", "connection.js")) as {
    Connection: { prototype: Record<string, (...a: Array<any>) => unknown> }
  }
  const defs = require(join(amqplibDir, "lib", "defs.js")) as { info: (id: number) => { name: string } }
  const sendMethod = Connection.prototype["sendMethod"]!
  Connection.prototype["sendMethod"] = function (this: unknown, channel: number, method: number, fields: unknown) {
    bump(`amqp ${defs.info(method).name}`)
    return sendMethod.call(this, channel, method, fields)
  }
  const sendMessage = Connection.prototype["sendMessage"]!
  Connection.prototype["sendMessage"] = function (this: unknown, ...args: Array<any>) {
    bump("amqp BasicPublish")
    return sendMessage.apply(this, args)
  }

  const { SQSClient } = await import("@aws-sdk/client-sqs")
  const send = SQSClient.prototype.send
  SQSClient.prototype.send = function (this: unknown, command: { constructor: { name: string } }, ...rest: Array<any>) {
    bump(`sqs ${command.constructor.name.replace(/Command$/u, "")}`)
    return (send as (...a: Array<any>) => unknown).call(this, command, ...rest)
  } as typeof send
}

export const snapshot = (): Map<string, number> => new Map(counts)

/** Per-job counts between two snapshots, largest first, dropping what rounds to zero. */
export const perJob = (
  before: Map<string, number>,
  after: Map<string, number>,
  jobs: number
): Record<string, number> => {
  const out: Array<[string, number]> = []
  for (const [key, value] of after) {
    const delta = (value - (before.get(key) ?? 0)) / jobs
    if (delta >= 0.005) out.push([key, Math.round(delta * 100) / 100])
  }
  return Object.fromEntries(out.sort((a, b) => b[1] - a[1]))
}
