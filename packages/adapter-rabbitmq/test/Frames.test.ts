import { describe, expect, it } from "@effect/vitest"
import type * as amqp from "amqplib"
import { createRequire } from "node:module"
import { dirname, join } from "node:path"
import { ChannelOutput, encodeAcks, FrameWriter } from "../src/internal/frames.js"

// The adapter's own publish frames, decoded by amqplib's own frame parser and codec: what the
// broker receives must be exactly what amqplib's `publish` would have said. And the README's
// promise that anything the direct path cannot take goes through amqplib.

const require = createRequire(import.meta.url)
const amqplibDir = dirname(require.resolve("amqplib"))
const frame = require(join(amqplibDir, "lib", "frame.js")) as {
  parseFrame: (bin: Buffer, max: number) => false | { readonly rest: Buffer }
  decodeFrame: (parsed: unknown) => {
    readonly id?: number
    readonly fields?: Record<string, unknown>
    readonly size?: number
    readonly content?: Buffer
  }
}
const defs = require(join(amqplibDir, "lib", "defs.js")) as {
  readonly BasicPublish: number
  readonly BasicAck: number
}

const frameMax = 4096

/** A stand-in with the shape of amqplib 2.3's confirm channel internals. */
const fakeChannel = () => {
  const writes: Array<Buffer> = []
  const confirms: Array<(error: unknown) => void> = []
  const stream = { write: (chunk: Buffer) => void writes.push(Buffer.from(chunk)) }
  const connection = { channels: [] as Array<unknown>, frameMax, sentSinceLastCheck: false }
  const channel = Object.assign(Object.create({ sendMessage() {} }) as object, {
    ch: 3,
    connection,
    pushConfirmCallback: (callback: (error: unknown) => void) => void confirms.push(callback)
  })
  connection.channels[3] = { channel, buffer: stream }
  return { channel: channel as unknown as amqp.ConfirmChannel, writes, confirms, connection }
}

/** The fake channel's stream, to be given `readableLength` and `writableLength`. */
const queuedStream = (fake: ReturnType<typeof fakeChannel>) => ({
  write: (chunk: Buffer) => void fake.writes.push(Buffer.from(chunk))
})

const decodeAll = (bin: Buffer) => {
  const frames: Array<ReturnType<typeof frame.decodeFrame>> = []
  let rest = bin
  while (rest.length > 0) {
    const parsed = frame.parseFrame(rest, frameMax)
    if (parsed === false) throw new Error("truncated frame")
    frames.push(frame.decodeFrame(parsed))
    rest = parsed.rest
  }
  return frames
}

describe("direct publish frames", () => {
  it("decode with amqplib's codec to the publish amqplib would send", () => {
    const fake = fakeChannel()
    const writer = FrameWriter.of(fake.channel)!
    expect(writer).toBeDefined()
    expect(writer.open).toBe(true)
    const messages = [
      { exchange: "", routingKey: "jobs", body: '{"v":1,"id":"a"}', messageId: "a", priority: 0 },
      { exchange: "errand.delay", routingKey: "q.1.0", body: "", messageId: "b-ü", priority: 7 },
      { exchange: "", routingKey: "jobs", body: '{"s":"héllo ✓ 😀"}', messageId: "c", priority: 9 }
    ]
    for (const message of messages) expect(writer.add(message, () => {})).toBe(true)
    expect(fake.writes).toHaveLength(0) // nothing goes out before flush
    writer.flush()
    expect(fake.confirms).toHaveLength(3)
    expect(fake.connection.sentSinceLastCheck).toBe(true)

    const frames = decodeAll(Buffer.concat(fake.writes))
    const bodies = messages.map((m) => (m.body === "" ? 2 : 3))
    expect(frames).toHaveLength(bodies.reduce((a, b) => a + b, 0))
    let at = 0
    for (const message of messages) {
      const method = frames[at++]!
      expect(method.id).toBe(defs.BasicPublish)
      expect(method.fields).toMatchObject({
        exchange: message.exchange,
        routingKey: message.routingKey,
        mandatory: true,
        immediate: false
      })
      const header = frames[at++]!
      expect(header.size).toBe(Buffer.byteLength(message.body))
      const properties = { ...header.fields }
      expect(properties).toMatchObject({
        contentType: "application/json",
        deliveryMode: 2,
        messageId: message.messageId
      })
      expect(properties["priority"]).toBe(message.priority > 0 ? message.priority : undefined)
      expect(properties["headers"]).toBeUndefined()
      if (message.body !== "") expect(frames[at++]!.content!.toString("utf8")).toBe(message.body)
    }
  })

  it("go straight to the socket while amqplib has nothing of the channel queued, else behind what it has", () => {
    const fake = fakeChannel()
    const socketWrites: Array<Buffer> = []
    const socket = { writable: true, write: (chunk: Buffer) => void socketWrites.push(Buffer.from(chunk)) }
    const queued = { ...queuedStream(fake), readableLength: 0, writableLength: 0 }
    Object.assign(fake.connection, { stream: socket })
    Object.assign(fake.connection.channels[3] as { buffer: object }, { buffer: queued })
    const writer = FrameWriter.of(fake.channel)!
    const message = { exchange: "", routingKey: "jobs", body: "{}", messageId: "a", priority: 0 }
    const send = () => {
      expect(writer.add(message, () => {})).toBe(true)
      writer.flush()
    }

    send()
    expect([socketWrites.length, fake.writes.length]).toEqual([1, 0])
    // amqplib's multiplexer has not yet moved a frame of this channel to the socket
    queued.readableLength = 1
    send()
    expect([socketWrites.length, fake.writes.length]).toEqual([1, 1])
    queued.readableLength = 0
    queued.writableLength = 1
    send()
    expect([socketWrites.length, fake.writes.length]).toEqual([1, 2])
    // a socket that can no longer write: amqplib's path, which reports the loss
    queued.writableLength = 0
    socket.writable = false
    send()
    expect([socketWrites.length, fake.writes.length]).toEqual([1, 3])
    socket.writable = true
    send()
    expect([socketWrites.length, fake.writes.length]).toEqual([2, 3])
    const frames = decodeAll(Buffer.concat([...socketWrites, ...fake.writes]))
    expect(frames.filter((f) => f.id === defs.BasicPublish)).toHaveLength(5)
  })

  it("acks decode with amqplib's codec to the acks amqplib would send", () => {
    const tags = [1, 7, 2 ** 32 + 5, 2 ** 53 - 1]
    const frames = decodeAll(
      encodeAcks(
        3,
        tags.map((deliveryTag) => ({ fields: { deliveryTag } })),
        true
      )
    )
    expect(frames.map((f) => f.id)).toEqual(tags.map(() => defs.BasicAck))
    expect(frames.map((f) => f.fields)).toEqual(
      tags.map((deliveryTag, i) => ({ deliveryTag, multiple: i === tags.length - 1 }))
    )
    const fake = fakeChannel()
    const output = ChannelOutput.of(fake.channel as unknown as amqp.Channel)!
    output.write(encodeAcks(output.internals.ch, [{ fields: { deliveryTag: 9 } }], false))
    expect(decodeAll(Buffer.concat(fake.writes)).map((f) => f.fields)).toEqual([{ deliveryTag: 9, multiple: false }])
  })

  it("leaves to amqplib what it cannot encode, and any channel that does not look like amqplib 2.3's", () => {
    const fake = fakeChannel()
    const writer = FrameWriter.of(fake.channel)!
    const base = { exchange: "", routingKey: "jobs", messageId: "m", priority: 0 }
    expect(writer.add({ ...base, body: "x".repeat(frameMax - 8 + 1) }, () => {})).toBe(false)
    expect(writer.add({ ...base, body: "{}", messageId: "i".repeat(256) }, () => {})).toBe(false)
    expect(writer.add({ ...base, body: "{}", routingKey: "k".repeat(256) }, () => {})).toBe(false)
    expect(fake.confirms).toHaveLength(0)

    // amqplib replaces `sendMessage` on a closing channel: from then on publishes go through it
    Object.assign(fake.channel, { sendMessage: () => {} })
    expect(writer.open).toBe(false)

    expect(FrameWriter.of({} as amqp.ConfirmChannel)).toBeUndefined()
    const moved = fakeChannel()
    moved.connection.channels[3] = undefined
    expect(FrameWriter.of(moved.channel)).toBeUndefined()
  })
})
