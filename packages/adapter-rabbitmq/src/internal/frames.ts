/**
 * Direct encoding of `basic.publish` and `basic.ack` for amqplib 2.x channels.
 *
 * amqplib encodes every publish from a generic options object: a property object with all fourteen
 * AMQP properties, an (empty) header table, three zero-filled buffers (method, header, body frame)
 * and a fourth that they are copied into. Most of a publish's client CPU goes there. A publish of
 * ours always has the same shape (JSON body, persistent, a message id, maybe a priority), so this
 * module writes its three frames straight into one buffer — shared by a whole batch. The frames
 * and their order on the wire are the same; the channel's confirm window is fed through amqplib's
 * own `pushConfirmCallback`, so confirms, returns and channel errors work unchanged. Acks are the
 * same 21 bytes amqplib would encode.
 *
 * Where the frames go: amqplib queues a channel's frames in a per-channel stream that its
 * multiplexer moves to the socket on a later turn of the event loop (`setImmediate`). When that
 * stream holds nothing of the channel, every earlier frame of the channel is in the socket
 * already, so the frames are written to the socket at once — as amqplib does for channel 0 and
 * heartbeats — saving the turn (a publish or an ack leaves now, not after the next poll). Else
 * they go behind the queued ones, in order.
 *
 * Only used when amqplib's internals have the expected shape (checked per channel), and only for
 * messages without headers whose body fits one frame; anything else goes through amqplib.
 */
import type * as amqp from "amqplib"

/** One message as the direct path encodes it. */
export interface DirectMessage {
  readonly exchange: string
  readonly routingKey: string
  readonly body: string
  readonly messageId: string
  readonly priority: number
}

/** The parts of amqplib's connection a direct write uses. */
interface ConnectionInternals {
  readonly channels: ReadonlyArray<{ readonly channel: unknown; readonly buffer: unknown } | null | undefined>
  readonly frameMax: number
  /** The socket (amqplib writes channel 0 and heartbeats to it directly). */
  readonly stream?: unknown
  sentSinceLastCheck: boolean
}

/** The parts of amqplib's channel a direct write uses. */
interface ChannelInternals {
  readonly ch: number
  readonly connection: ConnectionInternals
}

interface Stream {
  write(chunk: Buffer): unknown
}

/** A channel's stream in amqplib's multiplexer: a `PassThrough` in object mode. */
interface ChannelStream extends Stream {
  readonly readableLength?: unknown
  readonly writableLength?: unknown
}

interface Socket extends Stream {
  readonly writable?: unknown
}

const frameMethod = 1
const frameHeader = 2
const frameBody = 3
const frameEnd = 0xce
const frameOverhead = 8
const classBasic = 60
const methodPublish = 40
const methodAck = 80
const ackFrameSize = 21
const contentType = "application/json"
const flagContentType = 0x8000
const flagDeliveryMode = 0x1000
const flagPriority = 0x0800
const flagMessageId = 0x0080
const persistent = 2

// Batches share 64 KiB slabs (as Node's Buffer pool does): a batch's frames are one `write`.
const slabSize = 64 * 1024

const hasOwn = Object.prototype.hasOwnProperty

/** `text` written as ASCII at `offset` (the caller checked it is ASCII); the offset after it. */
const writeAscii = (target: Buffer, offset: number, text: string): number => {
  for (let i = 0; i < text.length; i++) target[offset + i] = text.charCodeAt(i)
  return offset + text.length
}

/** Byte length of a shortstr, or -1 when it is not ASCII or longer than 255 bytes. */
const asciiShortLength = (text: string): number => {
  if (text.length > 255) return -1
  for (let i = 0; i < text.length; i++) if (text.charCodeAt(i) > 0x7f) return -1
  return text.length
}

/**
 * The way to one amqplib channel's outgoing frames: the channel's stream in the multiplexer, or
 * the socket itself while that stream is empty.
 */
export class ChannelOutput {
  private constructor(
    private readonly channel: amqp.Channel,
    readonly internals: ChannelInternals,
    private readonly stream: ChannelStream,
    /** Undefined when the streams do not tell whether they hold anything: always through `stream`. */
    private readonly socket: Socket | undefined
  ) {}

  /** The output of `channel`, or undefined when amqplib's internals are not the expected ones. */
  static of(channel: amqp.Channel): ChannelOutput | undefined {
    const internals = channel as unknown as Partial<ChannelInternals>
    const connection = internals.connection
    const number = internals.ch
    if (
      typeof number !== "number" ||
      typeof (channel as unknown as { readonly sendMessage?: unknown }).sendMessage !== "function" ||
      hasOwn.call(channel, "sendMessage") ||
      typeof connection !== "object" ||
      connection === null ||
      !Array.isArray(connection.channels) ||
      typeof connection.frameMax !== "number" ||
      typeof connection.sentSinceLastCheck !== "boolean"
    ) {
      return undefined
    }
    const slot = connection.channels[number]
    const stream = slot?.buffer as Partial<ChannelStream> | undefined
    if (slot?.channel !== channel || typeof stream?.write !== "function") return undefined
    const socket = connection.stream as Partial<Socket> | undefined
    const direct =
      typeof socket?.write === "function" &&
      typeof socket.writable === "boolean" &&
      typeof stream.readableLength === "number" &&
      typeof stream.writableLength === "number"
    return new ChannelOutput(
      channel,
      internals as ChannelInternals,
      stream as ChannelStream,
      direct ? (socket as Socket) : undefined
    )
  }

  /**
   * Whether amqplib still sends on the channel: it replaces `sendMessage` with a thrower once the
   * channel is closing, and frees the channel's slot once it is closed. When not, frames go
   * through amqplib, which throws its own error.
   */
  get open(): boolean {
    const slot = this.internals.connection.channels[this.internals.ch]
    return slot?.channel === this.channel && slot.buffer === this.stream && !hasOwn.call(this.channel, "sendMessage")
  }

  /** Send `chunk` (whole frames of this channel) after every frame sent on the channel before. */
  write(chunk: Buffer): void {
    this.internals.connection.sentSinceLastCheck = true
    const socket = this.socket
    const stream = this.stream
    if (
      socket !== undefined &&
      socket.writable === true &&
      stream.readableLength === 0 &&
      stream.writableLength === 0
    ) {
      socket.write(chunk)
    } else {
      stream.write(chunk)
    }
  }
}

/**
 * `basic.ack` for each of `messages` (with `multiple` on the last one when `multipleLast`), in one
 * buffer for channel number `channel`: the frames amqplib's `ack` would send.
 */
export const encodeAcks = (
  channel: number,
  messages: ReadonlyArray<{ readonly fields: { readonly deliveryTag: number } }>,
  multipleLast: boolean
): Buffer => {
  const count = messages.length
  const out = Buffer.allocUnsafe(ackFrameSize * count)
  let offset = 0
  for (let i = 0; i < count; i++) {
    const tag = messages[i]!.fields.deliveryTag
    out[offset] = frameMethod
    out.writeUInt16BE(channel, offset + 1)
    out.writeUInt32BE(ackFrameSize - frameOverhead, offset + 3)
    out.writeUInt16BE(classBasic, offset + 7)
    out.writeUInt16BE(methodAck, offset + 9)
    // a delivery tag is a 64-bit counter; a JS number holds it exactly up to 2^53
    out.writeUInt32BE(Math.floor(tag / 0x1_0000_0000), offset + 11)
    out.writeUInt32BE(tag >>> 0, offset + 15)
    out[offset + 19] = multipleLast && i === count - 1 ? 1 : 0
    out[offset + 20] = frameEnd
    offset += ackFrameSize
  }
  return out
}

/** Writes direct publishes to one amqplib confirm channel. */
export class FrameWriter {
  private slab: Buffer = Buffer.allocUnsafe(slabSize)
  /** Start of what is encoded and not yet handed to the stream. */
  private start = 0
  private used = 0
  /** Encoded method frames by exchange and routing key (a send's batch reuses one). */
  private readonly methods = new Map<string, Map<string, Buffer>>()
  private methodCount = 0
  private readonly internals: ChannelInternals

  private constructor(
    private readonly output: ChannelOutput,
    private readonly pushConfirmCallback: (callback: (error: unknown) => void) => void
  ) {
    this.internals = output.internals
  }

  /** A writer for `channel`, or undefined when amqplib's internals are not the expected ones. */
  static of(channel: amqp.ConfirmChannel): FrameWriter | undefined {
    const push = (channel as unknown as { readonly pushConfirmCallback?: unknown }).pushConfirmCallback
    if (typeof push !== "function") return undefined
    const output = ChannelOutput.of(channel)
    if (output === undefined) return undefined
    return new FrameWriter(output, (callback) => push.call(channel, callback))
  }

  /** See `ChannelOutput.open`: when false, publishes go through amqplib. */
  get open(): boolean {
    return this.output.open
  }

  /**
   * Encode `message` after the ones before it and register `confirmed` for its confirm; false
   * (nothing done) when the message needs amqplib's own encoder. `flush` hands the frames over.
   */
  add(message: DirectMessage, confirmed: (error: unknown) => void): boolean {
    const { body, exchange, messageId, priority, routingKey } = message
    let idLength = asciiShortLength(messageId)
    const idAscii = idLength >= 0
    if (!idAscii) {
      idLength = Buffer.byteLength(messageId, "utf8")
      if (idLength > 255) return false
    }
    if (!(priority >= 0 && priority <= 255)) return false
    const bodyLength = body.length === 0 ? 0 : Buffer.byteLength(body, "utf8")
    if (bodyLength > this.internals.connection.frameMax - frameOverhead) return false
    const method = this.method(exchange, routingKey)
    if (method === undefined) return false
    const withPriority = priority > 0
    const headerPayload = 14 + 1 + contentType.length + 1 + (withPriority ? 1 : 0) + 1 + idLength
    const size = method.length + 7 + headerPayload + 1 + (bodyLength > 0 ? bodyLength + frameOverhead : 0)

    if (this.used + size > this.slab.length) {
      this.flush()
      this.slab = Buffer.allocUnsafe(Math.max(slabSize, size))
      this.start = 0
      this.used = 0
    }
    const out = this.slab
    const channel = this.internals.ch
    let offset = this.used + method.copy(out, this.used)

    // content header frame: class, weight, body size, property flags, properties
    out[offset] = frameHeader
    out.writeUInt16BE(channel, offset + 1)
    out.writeUInt32BE(headerPayload, offset + 3)
    out.writeUInt16BE(classBasic, offset + 7)
    out.writeUInt16BE(0, offset + 9)
    out.writeUInt32BE(0, offset + 11)
    out.writeUInt32BE(bodyLength, offset + 15)
    out.writeUInt16BE(
      flagContentType | flagDeliveryMode | (withPriority ? flagPriority : 0) | flagMessageId,
      offset + 19
    )
    offset += 21
    out[offset++] = contentType.length
    offset = writeAscii(out, offset, contentType)
    out[offset++] = persistent
    if (withPriority) out[offset++] = priority
    out[offset++] = idLength
    offset = idAscii ? writeAscii(out, offset, messageId) : offset + out.write(messageId, offset, idLength, "utf8")
    out[offset++] = frameEnd

    if (bodyLength > 0) {
      out[offset] = frameBody
      out.writeUInt16BE(channel, offset + 1)
      out.writeUInt32BE(bodyLength, offset + 3)
      offset += 7
      offset += out.write(body, offset, bodyLength, "utf8")
      out[offset++] = frameEnd
    }
    this.used = offset
    this.pushConfirmCallback(confirmed)
    return true
  }

  /** Send what `add` encoded (in order, before anything sent later). */
  flush(): void {
    if (this.used === this.start) return
    const chunk = this.slab.subarray(this.start, this.used)
    this.start = this.used
    this.output.write(chunk)
  }

  /** The method frame of a publish to `exchange` with `routingKey` (mandatory), cached. */
  private method(exchange: string, routingKey: string): Buffer | undefined {
    let byKey = this.methods.get(exchange)
    const cached = byKey?.get(routingKey)
    if (cached !== undefined) return cached
    const exchangeLength = Buffer.byteLength(exchange, "utf8")
    const keyLength = Buffer.byteLength(routingKey, "utf8")
    if (exchangeLength > 255 || keyLength > 255) return undefined
    const payload = 9 + exchangeLength + keyLength
    const frame = Buffer.alloc(payload + frameOverhead)
    frame[0] = frameMethod
    frame.writeUInt16BE(this.internals.ch, 1)
    frame.writeUInt32BE(payload, 3)
    frame.writeUInt16BE(classBasic, 7)
    frame.writeUInt16BE(methodPublish, 9)
    // ticket (0) at 11
    let offset = 13
    frame[offset++] = exchangeLength
    offset += frame.write(exchange, offset, "utf8")
    frame[offset++] = keyLength
    offset += frame.write(routingKey, offset, "utf8")
    frame[offset++] = 1 // mandatory, not immediate
    frame[offset] = frameEnd
    // delay routing keys and queues are few; bound the cache anyway
    if (this.methodCount >= 1024) {
      this.methods.clear()
      this.methodCount = 0
      byKey = undefined
    }
    if (byKey === undefined) {
      byKey = new Map()
      this.methods.set(exchange, byKey)
    }
    byKey.set(routingKey, frame)
    this.methodCount++
    return frame
  }
}
