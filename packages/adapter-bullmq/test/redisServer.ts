/**
 * A private redis-server for tests that stop, restart or reconfigure Redis (never the shared one).
 */
import { Effect, type Scope } from "effect"
import { Redis } from "ioredis"
import { type ChildProcess, spawn } from "node:child_process"
import { mkdtempSync, rmSync } from "node:fs"
import { createServer } from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"

const freePort = () =>
  new Promise<number>((resolve, reject) => {
    const server = createServer()
    server.unref()
    server.on("error", reject)
    server.listen(0, "127.0.0.1", () => {
      const address = server.address()
      const port = typeof address === "object" && address ? address.port : 0
      server.close(() => resolve(port))
    })
  })

const ping = async (port: number) => {
  const client = new Redis({
    port,
    host: "127.0.0.1",
    lazyConnect: true,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null
  })
  client.on("error", () => {})
  try {
    await client.connect()
    return (await client.ping()) === "PONG"
  } catch {
    return false
  } finally {
    client.disconnect()
  }
}

export interface RedisServer {
  readonly port: number
  readonly url: string
  /** SIGKILL the server (its AOF, fsync always, keeps every confirmed write). */
  readonly kill: Effect.Effect<void>
  /** Start it again on the same port and dir, waiting until it answers PING. */
  readonly start: Effect.Effect<void>
  /** kill + start. */
  readonly restart: Effect.Effect<void>
  /** SIGSTOP / SIGCONT: the server hangs without closing sockets. */
  readonly pause: Effect.Effect<void>
  readonly resume: Effect.Effect<void>
}

/** Start a redis-server with persistence on (appendonly yes, fsync always) in its own temp dir. */
export const startRedisServer = async (
  extraArgs: ReadonlyArray<string> = []
): Promise<RedisServer & { readonly stop: () => Promise<void> }> => {
  const port = await freePort()
  const dir = mkdtempSync(join(tmpdir(), "errand-redis-"))
  let child: ChildProcess | undefined
  const start = async () => {
    child = spawn(
      "redis-server",
      [
        "--port",
        String(port),
        "--bind",
        "127.0.0.1",
        "--dir",
        dir,
        "--appendonly",
        "yes",
        "--appendfsync",
        "always",
        "--save",
        "",
        ...extraArgs
      ],
      { stdio: "ignore" }
    )
    const deadline = Date.now() + 15_000
    while (Date.now() < deadline) {
      if (await ping(port)) return
      await new Promise((r) => setTimeout(r, 50))
    }
    throw new Error(`redis-server on port ${port} did not start`)
  }
  const kill = async () => {
    const current = child
    if (!current || current.exitCode !== null || current.signalCode !== null) return
    await new Promise<void>((resolve) => {
      current.once("exit", () => resolve())
      current.kill("SIGCONT")
      current.kill("SIGKILL")
    })
  }
  await start()
  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    kill: Effect.promise(kill),
    start: Effect.promise(start),
    restart: Effect.promise(async () => {
      await kill()
      await start()
    }),
    pause: Effect.sync(() => void child?.kill("SIGSTOP")),
    resume: Effect.sync(() => void child?.kill("SIGCONT")),
    stop: async () => {
      await kill()
      rmSync(dir, { recursive: true, force: true })
    }
  }
}

/** A scoped private redis-server (killed and its dir removed when the scope closes). */
export const redisServer = (extraArgs: ReadonlyArray<string> = []): Effect.Effect<RedisServer, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.promise(() => startRedisServer(extraArgs)),
    (server) => Effect.promise(() => server.stop())
  )
