/**
 * Writes of one tick in one socket write.
 *
 * @internal
 */
interface Corkable {
  cork(): void
  uncork(): void
}

const held = new WeakSet<Corkable>()

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
  const { status, stream } = client as { readonly status?: unknown; readonly stream?: Partial<Corkable> }
  if (
    stream === undefined ||
    typeof stream.cork !== "function" ||
    typeof stream.uncork !== "function" ||
    status !== "ready" ||
    held.has(stream as Corkable)
  ) {
    return
  }
  held.add(stream as Corkable)
  stream.cork()
  process.nextTick(release, stream)
}
