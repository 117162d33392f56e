/**
 * OS processes the scenarios start and fault: worker processes, a private redis-server (its own
 * port and temp dir, persistence on), the fauxqs emulator in a child process, and RabbitMQ control
 * through `rabbitmqctl`.
 */
import { Redis } from "ioredis"
import { type ChildProcess, execFile, fork, spawn } from "node:child_process"
import { mkdtempSync, openSync, rmSync } from "node:fs"
import { connect, createServer } from "node:net"
import { tmpdir } from "node:os"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"
import type { WorkerConfig } from "./harness.js"

export const repoRoot = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "..")
const srcDir = join(dirname(fileURLToPath(import.meta.url)), "..")

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms))

export const freePort = () =>
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

/** Wait until `check` holds, polling; false on timeout. */
export const waitFor = async (check: () => Promise<boolean> | boolean, timeout: number, every = 200) => {
  const deadline = Date.now() + timeout
  for (;;) {
    if (await check()) return true
    if (Date.now() > deadline) return false
    await sleep(every)
  }
}

const tsxArgs = ["--import", "tsx", "--conditions=source"]

export interface WorkerProcess {
  readonly child: ChildProcess
  readonly pid: number
  readonly ready: Promise<void>
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null; at: number }>
  /** Set when the parent killed or stopped it on purpose. */
  expectedExit: boolean
  /** Set once the worker loop runs. */
  isReady: boolean
}

/** Fork a worker process (`worker.ts`) with this config; its output goes to `outFile`. */
export const spawnWorker = (config: WorkerConfig, outFile: string): WorkerProcess => {
  const out = openSync(outFile, "a")
  const child = fork(join(srcDir, "worker.ts"), [], {
    cwd: repoRoot,
    execArgv: tsxArgs,
    env: { ...process.env, CHAOS_WORKER: JSON.stringify(config) },
    stdio: ["ignore", out, out, "ipc"]
  })
  const ready = new Promise<void>((resolve, reject) => {
    child.on("message", (m) => {
      if (typeof m === "object" && m !== null && "ready" in m) resolve()
    })
    child.once("exit", () => reject(new Error("worker exited before it was ready")))
  })
  ready.catch(() => {})
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; at: number }>((resolve) =>
    child.once("exit", (code, signal) => resolve({ code, signal, at: Date.now() }))
  )
  const w: WorkerProcess = { child, pid: child.pid ?? -1, ready, exited, expectedExit: false, isReady: false }
  ready.then(
    () => (w.isReady = true),
    () => {}
  )
  return w
}

const redisPing = async (port: number, password?: string) => {
  const client = new Redis({
    port,
    host: "127.0.0.1",
    lazyConnect: true,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
    ...(password ? { password } : {})
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
  readonly pid: () => number | undefined
  /** SIGKILL (the AOF with fsync always keeps every confirmed write). */
  readonly kill: () => Promise<void>
  readonly start: () => Promise<void>
  readonly restart: () => Promise<void>
  readonly pause: () => void
  readonly resume: () => void
  /** Kill and remove its directory. */
  readonly stop: () => Promise<void>
}

/** A private redis-server on its own port and temp dir, appendonly yes, fsync always. */
export const startRedis = async (extraArgs: ReadonlyArray<string> = [], password?: string): Promise<RedisServer> => {
  const port = await freePort()
  const dir = mkdtempSync(join(tmpdir(), "errand-chaos-redis-"))
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
        "--maxmemory-policy",
        "noeviction",
        ...extraArgs
      ],
      { stdio: "ignore" }
    )
    if (!(await waitFor(() => redisPing(port, password), 15_000, 50)))
      throw new Error(`redis-server on ${port} did not start`)
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
    pid: () => child?.pid,
    kill,
    start,
    restart: async () => {
      await kill()
      await start()
    },
    pause: () => void child?.kill("SIGSTOP"),
    resume: () => void child?.kill("SIGCONT"),
    stop: async () => {
      await kill()
      rmSync(dir, { recursive: true, force: true })
    }
  }
}

export interface FauxqsServer {
  readonly endpoint: string
  readonly child: ChildProcess
  readonly stop: () => Promise<void>
}

/** fauxqs in its own process (so it can be SIGSTOPped), bound to 127.0.0.1. */
export const startFauxqs = async (outFile: string): Promise<FauxqsServer> => {
  const port = await freePort()
  const out = openSync(outFile, "a")
  const child = spawn(process.execPath, [...tsxArgs, join(srcDir, "fauxqsServer.ts"), String(port)], {
    cwd: repoRoot,
    stdio: ["ignore", out, out]
  })
  const up = await waitFor(() => canConnect(port), 30_000, 100)
  if (!up) throw new Error("fauxqs did not start")
  return {
    endpoint: `http://127.0.0.1:${port}`,
    child,
    stop: () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null || child.signalCode !== null) return resolve()
        child.once("exit", () => resolve())
        child.kill("SIGCONT")
        child.kill("SIGKILL")
      })
  }
}

const canConnect = (port: number) =>
  new Promise<boolean>((resolve) => {
    const socket = connect(port, "127.0.0.1")
    socket.once("connect", () => {
      socket.destroy()
      resolve(true)
    })
    socket.once("error", () => resolve(false))
  })

const run = (cmd: string, args: ReadonlyArray<string>, timeout = 120_000) =>
  new Promise<{ ok: boolean; stdout: string; stderr: string }>((resolve) => {
    execFile(cmd, args as Array<string>, { timeout }, (error, stdout, stderr) =>
      resolve({ ok: !error, stdout: String(stdout), stderr: String(stderr) })
    )
  })

export const rabbitmq = {
  stopApp: () => run("rabbitmqctl", ["-q", "stop_app"]),
  startApp: async () => {
    const r = await run("rabbitmqctl", ["-q", "start_app"])
    await run("rabbitmqctl", ["-q", "await_startup", "--timeout", "120"])
    return r
  },
  /** The beam process of the node. */
  beamPid: async (): Promise<number | undefined> => {
    const r = await run("rabbitmqctl", ["eval", "os:getpid()."])
    const n = Number(r.stdout.replace(/[^0-9]/g, ""))
    return r.ok && n > 0 ? n : undefined
  },
  /** Connections other than ours (`errand-chaos…` names), so we never disturb someone's run. */
  otherConnections: async (): Promise<number> => {
    const r = await run("rabbitmqctl", ["-q", "list_connections", "client_properties"])
    if (!r.ok) return 0
    return r.stdout
      .split("\n")
      .filter((l) => l.trim() !== "" && !l.includes("errand-chaos") && !/client_properties/.test(l)).length
  },
  up: async () => (await run("rabbitmqctl", ["-q", "status"], 30_000)).ok
}
