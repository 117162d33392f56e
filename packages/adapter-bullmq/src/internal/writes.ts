/**
 * Commands in one socket write: the acks of one tick, the adds of one batch.
 *
 * @internal
 */
interface Corkable {
  cork(): void
  uncork(): void
}

const held = new WeakSet<Corkable>()

/** The socket of a ready ioredis client, if it can be corked. */
const corkable = (client: object): Corkable | undefined => {
  const { status, stream } = client as { readonly status?: unknown; readonly stream?: Partial<Corkable> }
  return status === "ready" && typeof stream?.cork === "function" && typeof stream.uncork === "function"
    ? (stream as Corkable)
    : undefined
}

const release = (stream: Corkable): void => {
  held.delete(stream)
  stream.uncork()
}

/**
 * Call right after writing a command on `client`: hold any further command written on its socket
 * until the current tick's callbacks and microtasks are done, then send them in one write. The
 * command just written has gone out already, so a lone one waits for nothing; the acks of many
 * handlers ending together (a worker at high concurrency) leave in one system call and wake Redis
 * once, instead of once each. Order on the connection is unchanged.
 */
export const holdRestOfTick = (client: object): void => {
  const stream = corkable(client)
  if (stream === undefined || held.has(stream)) return
  held.add(stream)
  stream.cork()
  process.nextTick(release, stream)
}

/**
 * Run `write` (which writes commands on `client`) with the socket corked, so that what it writes
 * leaves in one write when it returns, after anything written before it.
 */
export const inOneWrite = (client: object, write: () => void): void => {
  const stream = corkable(client)
  if (stream === undefined) return write()
  stream.cork()
  try {
    write()
  } finally {
    stream.uncork()
  }
}
