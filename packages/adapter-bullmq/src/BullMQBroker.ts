/**
 * The BullMQ (Redis) broker. Delays, priorities, job-id deduplication, lock renewal (the lease)
 * and stalled-job recovery (crash recovery) are BullMQ's own; Errand adds its attempt counter and
 * retry policy (BullMQ's `attempts` is never used) and a durable dead-letter store per queue.
 *
 * @example
 * ```ts
 * import { BullMQBroker } from "@errand/adapter-bullmq"
 *
 * const BrokerLive = BullMQBroker.layer({ url: "redis://127.0.0.1:6379", prefix: "{errand}" })
 * ```
 *
 * @since 0.1.0
 */
import { Broker, Errors, QueueName } from "@errand/core"
import { Job, Queue, Worker } from "bullmq"
import type { ChainableCommander, Redis, RedisOptions } from "ioredis"
import { Config, Context, Effect, Layer, Option, type Redacted, Schedule, Schema, type Scope } from "effect"
import { randomUUID } from "node:crypto"
import * as Connection from "./internal/connection.js"
import { toBrokerError } from "./internal/errors.js"
import { deadLetterScript, fromJobId, queueKeys, toJobId, uncountScript } from "./internal/keys.js"
import { holdRestOfTick, inOneWrite } from "./internal/writes.js"

/**
 * What this adapter really does. Ordering is `"none"`: open-source BullMQ has no per-group
 * order, and FIFO holds only for one consumer at concurrency 1, which is not a promise.
 *
 * @since 0.1.0
 */
export const capabilities: Broker.Capabilities = {
  maxDelay: Infinity,
  priorities: true,
  ordering: "none",
  deduplication: true,
  leaseExtension: true,
  // Redis caps a string at 512 MB; the body is stored JSON-escaped, which can double it.
  maxPayloadBytes: 128 * 1024 * 1024,
  persistent: true
}

/**
 * The capabilities of a broker made with these options: `capabilities`, with `priorities: false`
 * when the `priorities` option is `false`.
 *
 * @since 0.1.0
 */
export const capabilitiesFor = (options: Pick<Options, "priorities"> = {}): Broker.Capabilities =>
  options.priorities === false ? withoutPriorities : capabilities

const withoutPriorities: Broker.Capabilities = { ...capabilities, priorities: false }

/**
 * What to do when Redis' `maxmemory-policy` is not `noeviction` (eviction silently deletes jobs).
 *
 * @since 0.1.0
 */
export type EvictionPolicyMode = "warn" | "refuse" | "ignore"

/**
 * Layer options. Give `url` or `connection` (ioredis options), not both.
 *
 * @since 0.1.0
 */
export interface Options {
  /** `redis://[user:password@]host:port[/db]` or `rediss://…`. Defaults to `redis://127.0.0.1:6379`. */
  readonly url?: string | Redacted.Redacted<string> | undefined
  /** ioredis connection options, instead of `url`. */
  readonly connection?: RedisOptions | undefined
  /** Key prefix (queue name rules; may be one hash tag such as `{errand}` for Redis Cluster). Default `errand`. */
  readonly prefix?: string | undefined
  /** Milliseconds before a Redis command fails with `BrokerError { reason: "Timeout" }`. Default 5,000. */
  readonly commandTimeout?: number | undefined
  /**
   * Milliseconds a `send` keeps retrying while Redis is unreachable (reconnecting, restarting)
   * before failing with `BrokerError { reason: "Connection" | "Timeout" }`. Safe: a resent job id
   * is deduplicated. Default 10,000; 0 fails at once.
   */
  readonly sendTimeout?: number | undefined
  /** Milliseconds to wait for the first connection before the layer fails. Default 5,000. */
  readonly connectTimeout?: number | undefined
  /** Behaviour when `maxmemory-policy` is not `noeviction`. Default `"warn"`. */
  readonly evictionPolicy?: EvictionPolicyMode | undefined
  /** Completed jobs kept per queue (their ids keep answering `duplicate`). Default 1,000; 0 keeps none. */
  readonly keepCompleted?: number | undefined
  /**
   * Milliseconds between stalled-job checks (crash recovery happens at most this long after a
   * lease runs out). Default: half the first lease asked for, between 250 ms and 30 s.
   */
  readonly stalledInterval?: number | undefined
  /**
   * Whether a job's priority orders delivery. Default `true`: every job is added to BullMQ's
   * prioritized set. `false` adds every job to BullMQ's plain wait list (cheaper in Redis per add
   * and per fetch; delivery in enqueue order, priority ignored) and the broker declares
   * `priorities: false`. All processes using a queue must agree: BullMQ serves the plain list
   * before any prioritized job.
   */
  readonly priorities?: boolean | undefined
}

/**
 * Redis evicts keys under memory pressure and `evictionPolicy` is `"refuse"`.
 *
 * @since 0.1.0
 */
export class UnsafeEvictionPolicy extends Schema.TaggedError<UnsafeEvictionPolicy>()("UnsafeEvictionPolicy", {
  policy: Schema.String,
  endpoint: Schema.String
}) {
  override get message(): string {
    return `Redis ${this.endpoint} has maxmemory-policy "${this.policy}": eviction silently deletes jobs; set it to "noeviction"`
  }
}

/**
 * Errors the layer can fail with while starting.
 *
 * @since 0.1.0
 */
export type LayerError = Errors.BrokerError | Errors.InvalidOption | Errors.InvalidQueueName | UnsafeEvictionPolicy

/**
 * The adapter's own service: the broker contract plus what is specific to Redis.
 *
 * @since 0.1.0
 */
export interface BullMQBrokerShape extends Broker.BrokerShape {
  /** The validated key prefix. */
  readonly prefix: string
  /** `host:port` of the Redis server. */
  readonly endpoint: string
  /** `maxmemory-policy` read at start, where Redis told it. */
  readonly evictionPolicy: string | undefined
}

/**
 * The BullMQ broker service tag. Its layers also provide core's `Broker.Broker`.
 *
 * @since 0.1.0
 */
export class BullMQBroker extends Context.Service<BullMQBroker, BullMQBrokerShape>()(
  "@errand/adapter-bullmq/BullMQBroker"
) {}

const jobName = "errand"
/** Stalled jobs always go back to wait: core's attempt counter, not BullMQ's stall count, decides. */
const maxStalledCount = 1_000_000
/** Upper bound of one blocking wait, so that a missed wake-up costs at most this. */
const maxBlockMs = 2000

/**
 * A job this adapter holds the lock of: handed out as a delivery, or prefetched by an ack. Only
 * what a delivery needs is kept (no BullMQ `Job`: building one per job costs more than the rest of
 * the take path); `settle` is the delivery's settle state.
 */
interface Live {
  /** BullMQ job id. */
  readonly jobId: string
  /** The job hash's `data` field as stored (JSON-encoded body). */
  readonly data: string
  /** BullMQ's `attemptsStarted` after this fetch. */
  readonly attemptsStarted: number
  readonly token: string
  readonly queue: string
  readonly worker: Worker
  readonly fetchedAt: number
  settle: "open" | "settling" | "settled"
}

/** Adds per socket write in a bulk send: few enough that Redis starts on the first while the rest are built. */
const batchSize = 250
/** Longest a job fetched by an ack waits for a `take` before it goes back to wait. */
const maxPrefetchHold = 1000

const noop = () => {}

/** The options every Errand job is added with that BullMQ's finishing scripts read (core decides retries). */
const finishOptions = { attempts: 1 }

/** What BullMQ's argument builders read of a job: its id and options. */
const bullJob = (jobId: string) => ({ id: jobId, opts: finishOptions }) as never

/** The body from a job's stored `data` field, which BullMQ wrote as `JSON.stringify(body)`. */
const bodyOf = (data: string): string => {
  try {
    const value: unknown = JSON.parse(data)
    return typeof value === "string" ? value : JSON.stringify(value)
  } catch {
    return data
  }
}

/** Errand priority 0..9 (higher first) → BullMQ priority 10..1 (lower first). Every job is prioritized, so the order is total. */
const toBullPriority = (priority: number): number => 10 - Math.min(9, Math.max(0, Math.trunc(priority) || 0))

const stateName = (state: string): string =>
  state === "wait" || state === "prioritized" || state === "paused" || state === "waiting-children" ? "waiting" : state

/**
 * Validate a key prefix (core's queue-name rules; one Redis Cluster hash tag allowed).
 *
 * @since 0.1.0
 */
export const validatePrefix = (prefix: string): Effect.Effect<string, Errors.InvalidQueueName> => {
  const reason = QueueName.checkPrefix(prefix)
  return reason === undefined
    ? Effect.succeed(prefix)
    : Effect.fail(new Errors.InvalidQueueName({ queue: prefix, reason }))
}

/**
 * Build the broker in a scope: connects (bounded by `connectTimeout`), checks the eviction policy,
 * and on scope close releases every unsettled delivery back to wait and closes all connections.
 *
 * @since 0.1.0
 */
export const make = (options: Options = {}): Effect.Effect<BullMQBrokerShape, LayerError, Scope.Scope> =>
  Effect.gen(function* () {
    const prefix = yield* validatePrefix(options.prefix ?? "errand")
    const commandTimeout = yield* Connection.positive("commandTimeout", options.commandTimeout, 5000)
    const sendTimeout =
      options.sendTimeout === 0 ? 0 : yield* Connection.positive("sendTimeout", options.sendTimeout, 10_000)
    // Enqueue waits out a short outage (reconnect, restart) instead of failing at once, within a bound.
    // The happy path pays for no schedule: the retry loop starts only at the first retryable failure.
    const retrySchedule = Schedule.min([Schedule.exponential("50 millis"), Schedule.spaced("1 second")]).pipe(
      Schedule.upTo({ duration: sendTimeout })
    )
    const retryTransient = <A>(effect: Effect.Effect<A, Errors.BrokerError>) =>
      sendTimeout === 0
        ? effect
        : Effect.catch(effect, (error) => {
            if (!error.isRetryable) return Effect.fail(error)
            // the loop's first attempt replays the failure already seen, so its first wait is the schedule's first
            let replay = true
            return Effect.retry(
              Effect.suspend(() => {
                if (!replay) return effect
                replay = false
                return Effect.fail(error)
              }),
              { while: (failure) => failure.isRetryable, schedule: retrySchedule }
            )
          })
    const connectTimeout = yield* Connection.positive("connectTimeout", options.connectTimeout, 5000)
    const keepCompleted = options.keepCompleted ?? 1000
    if (!Number.isInteger(keepCompleted) || keepCompleted < 0) {
      return yield* new Errors.InvalidOption({ option: "keepCompleted", reason: "must be a non-negative integer" })
    }
    if (options.stalledInterval !== undefined) yield* Connection.positive("stalledInterval", options.stalledInterval, 0)
    if (options.priorities !== undefined && typeof options.priorities !== "boolean") {
      return yield* new Errors.InvalidOption({ option: "priorities", reason: "must be a boolean" })
    }
    const prioritized = options.priorities !== false
    const mode = options.evictionPolicy ?? "warn"
    if (mode !== "warn" && mode !== "refuse" && mode !== "ignore") {
      return yield* new Errors.InvalidOption({
        option: "evictionPolicy",
        reason: 'must be "warn", "refuse" or "ignore"'
      })
    }
    const resolved = yield* Connection.resolve(
      options.url === undefined && options.connection === undefined ? { url: "redis://127.0.0.1:6379" } : options
    )
    const endpoint = resolved.endpoint
    const fail = (operation: string) => (error: unknown) => toBrokerError(error, operation, endpoint)

    const client = yield* Effect.acquireRelease(
      Connection.connect(resolved, { commandTimeout, connectTimeout, name: `errand@${prefix}` }),
      (c) => Connection.close(c)
    )

    const evictionPolicy = mode === "ignore" ? undefined : yield* Connection.readEvictionPolicy(client, endpoint)
    if (mode !== "ignore" && evictionPolicy !== "noeviction") {
      const shown = evictionPolicy ?? "unknown"
      if (mode === "refuse") return yield* new UnsafeEvictionPolicy({ policy: shown, endpoint })
      yield* Effect.logWarning(
        `Errand/BullMQ: Redis ${endpoint} has maxmemory-policy "${shown}", not "noeviction": under memory pressure Redis will silently delete jobs. Set maxmemory-policy noeviction (or pass evictionPolicy: "refuse" to fail instead).`
      )
    }

    const removeOnComplete = keepCompleted === 0 ? true : { count: keepCompleted }
    const queues = new Map<string, Queue>()
    const workers = new Map<string, Worker>()
    const outstanding = new Set<Live>()
    // Jobs an ack fetched in the same script (BullMQ's own worker does this: moveToFinished with
    // fetchNext), waiting for the next take of their queue; at most as many as are in flight.
    const prefetched = new Map<string, Array<Live>>()
    const inFlight = new Map<string, number>()
    const sweepers = new Map<string, ReturnType<typeof setTimeout>>()
    // acks in flight that will bring a job, and takes waiting for one of them
    const fetching = new Map<string, number>()
    const fetchWaiters = new Map<string, Array<() => void>>()
    const fetchSettled = (queue: string) => {
      fetching.set(queue, (fetching.get(queue) ?? 1) - 1)
      const waiters = fetchWaiters.get(queue)
      if (waiters !== undefined && waiters.length > 0) waiters.shift()!()
    }
    // Takes blocked on a queue's marker. While one is, acks fetch no next job: the job would wait
    // for a take that sleeps in Redis, and the take fetches it itself when the add's marker wakes it.
    const markerWaits = new Map<string, number>()
    // Queues whose last fetch found nothing: the next take blocks on the marker before it fetches
    // (as BullMQ's worker does once drained). BullMQ's add, delay, promotion and stalled-check
    // scripts set the marker, `wake` does after a release; a marker another process popped costs at
    // most one wait's bound (2 s), as it does BullMQ's own worker.
    const drained = new Set<string>()
    const idleBlocking: Array<Redis> = []
    const busyBlocking = new Set<Redis>()
    let workerClient: Redis | undefined
    const bullClients = new WeakMap<Worker, Awaited<Worker["backend"]["client"]>>()
    let closing = false

    const getQueue = (name: string): Queue => {
      let queue = queues.get(name)
      if (!queue) {
        queue = new Queue(name, { connection: client, prefix, skipVersionCheck: true })
        queue.on("error", noop)
        queues.set(name, queue)
      }
      return queue
    }

    const getWorker = (name: string, lease: number): Worker => {
      let worker = workers.get(name)
      if (!worker) {
        if (!workerClient) {
          workerClient = client.duplicate({ maxRetriesPerRequest: null, connectionName: `errand-worker@${prefix}` })
          workerClient.on("error", noop)
        }
        worker = new Worker(name, null, {
          connection: workerClient,
          prefix,
          autorun: false,
          skipVersionCheck: true,
          lockDuration: lease,
          maxStalledCount,
          stalledInterval: options.stalledInterval ?? Math.min(30_000, Math.max(250, Math.floor(lease / 2))),
          removeOnComplete: { count: keepCompleted }
        })
        worker.on("error", noop)
        // Manual mode: BullMQ does not start the stalled-job checker unless asked.
        worker.startStalledCheckTimer().catch(noop)
        // the connection BullMQ resolves once per worker, kept so that an ack need not wait a tick for it
        const created = worker
        created.backend.client.then((bull) => bullClients.set(created, bull), noop)
        workers.set(name, worker)
      }
      return worker
    }

    const redis = <A>(operation: string, f: () => Promise<A>) => Effect.tryPromise({ try: f, catch: fail(operation) })

    // ---- send ----------------------------------------------------------------------------

    /**
     * The options stored with a job: only what BullMQ's add scripts or a BullMQ processor read
     * (`attempts: 1`: core decides retries, BullMQ must never retry on its own). Retention is not
     * stored per job: this adapter passes it to every finishing script, and its workers carry the
     * same setting.
     */
    const jobOptions = (message: Broker.OutgoingMessage): { attempts: number; priority?: number; delay?: number } =>
      prioritized
        ? message.delay > 0
          ? { attempts: 1, priority: toBullPriority(message.priority), delay: Math.ceil(message.delay) }
          : { attempts: 1, priority: toBullPriority(message.priority) }
        : message.delay > 0
          ? { attempts: 1, delay: Math.ceil(message.delay) }
          : { attempts: 1 }

    /**
     * The job as BullMQ's add scripts read it: what `Job.asJSON` gives for these options, without
     * building a `Job` (its constructor and option validation cost more than the add itself; our
     * ids and priorities are valid by construction).
     */
    const jobData = (message: Broker.OutgoingMessage) =>
      ({
        name: jobName,
        data: JSON.stringify(message.body),
        opts: jobOptions(message),
        timestamp: Date.now()
      }) as never

    const sendInternal = (queue: string, messages: ReadonlyArray<Broker.OutgoingMessage>, checkDead: boolean) =>
      redis("send", async (): Promise<ReadonlyArray<Broker.SendResult>> => {
        if (messages.length === 0) return []
        const q = getQueue(queue)
        const backend = q.backend
        const bull = await backend.client
        if (messages.every((message) => message.unique === true)) {
          // Core-generated ids cannot exist yet (nor be dead-lettered): the add scripts alone, no
          // MULTI with existence checks (building a MULTI copies BullMQ's scripts onto it, which
          // costs more than the add itself). A resend after a lost reply is still safe: BullMQ's
          // add script keeps the job already stored under an id.
          if (messages.length === 1) {
            const message = messages[0]!
            const jobId = toJobId(message.id)
            await backend.addJobToTransaction(bull, jobData(message), jobId)
          } else {
            // Queue.addBulk's add scripts, `batchSize` at a time in one socket write each, every
            // group sent as soon as it is built (Redis runs the first while the next is built);
            // written straight on the connection with the socket corked rather than through an
            // ioredis Pipeline: the same writes, without its per-command bookkeeping.
            const sent: Array<Promise<unknown>> = []
            for (let from = 0; from < messages.length; from += batchSize) {
              const to = Math.min(messages.length, from + batchSize)
              inOneWrite(bull, () => {
                for (let i = from; i < to; i++) {
                  const message = messages[i]!
                  const added = backend.addJobToTransaction(bull, jobData(message), toJobId(message.id))
                  // answered through Promise.all below; never an unhandled rejection if building the rest throws
                  added.catch(noop)
                  sent.push(added)
                }
              })
            }
            await Promise.all(sent)
          }
          return messages.map((message) => ({ id: message.id, duplicate: false }))
        }
        const keys = queueKeys(prefix, queue)
        // A MULTI runs EXISTS and BullMQ's add script back to back, so "existed before" is exact.
        const multi = bull.multi() as unknown as ChainableCommander
        const stride = checkDead ? 3 : 2
        const pending: Array<Promise<unknown>> = []
        for (const message of messages) {
          const jobId = toJobId(message.id)
          if (checkDead) multi.hexists(keys.deadLetters, message.id)
          multi.exists(keys.job(message.id))
          pending.push(backend.addJobToTransaction(multi as never, jobData(message), jobId).catch(noop))
        }
        const replies = (await multi.exec()) ?? []
        await Promise.all(pending)
        const results: Array<Broker.SendResult> = []
        const duplicates: Array<number> = []
        for (let i = 0; i < messages.length; i++) {
          const message = messages[i]!
          for (let k = 0; k < stride; k++) {
            const [error] = replies[i * stride + k] ?? [new Error("missing reply")]
            if (error) throw error
          }
          const dead = checkDead && replies[i * stride]?.[1] === 1
          const existed = replies[i * stride + stride - 2]?.[1] === 1
          if (dead) {
            // A dead-lettered id whose failed job was trimmed by hand: undo the add, answer "dead".
            if (!existed) await q.remove(toJobId(message.id)).catch(noop)
            results.push({ id: message.id, duplicate: true, existingState: "dead" })
          } else if (existed) {
            duplicates.push(i)
            results.push({ id: message.id, duplicate: true })
          } else {
            results.push({ id: message.id, duplicate: false })
          }
        }
        for (const i of duplicates) {
          const id = messages[i]!.id
          const state = await q.getJobState(toJobId(id))
          results[i] = { id, duplicate: true, existingState: stateName(state) }
        }
        return results
      })

    // ---- take ----------------------------------------------------------------------------

    /** Count a settled delivery out of its queue's in-flight jobs. */
    const settled = (live: Live) => {
      live.settle = "settled"
      if (outstanding.delete(live)) inFlight.set(live.queue, (inFlight.get(live.queue) ?? 1) - 1)
    }

    /**
     * Run a settle operation at most once per delivery (concurrent and later calls are no-ops; a
     * failed one may be tried again). One callback rather than a chain of combinators: an ack is on
     * every job's path.
     */
    const settle = (
      live: Live,
      operation: string,
      f: () => Promise<unknown>
    ): Effect.Effect<void, Errors.BrokerError> =>
      Effect.uninterruptible(
        Effect.callback<void, Errors.BrokerError>((resume) => {
          if (live.settle !== "open") return resume(Effect.void)
          live.settle = "settling"
          let settling: Promise<unknown>
          try {
            settling = f()
          } catch (error) {
            settling = Promise.reject(error)
          }
          settling.then(
            () => {
              settled(live)
              resume(Effect.void)
            },
            (error: unknown) => {
              live.settle = "open"
              resume(Effect.fail(fail(operation)(error)))
            }
          )
        })
      )

    /**
     * Complete a job (BullMQ's moveToFinished, called as `Job.moveToCompleted` does, without building
     * a `Job`). With `fetchNext` the same script locks and returns the next job; the raw reply is
     * returned for `fromFinishedReply`.
     */
    const complete = (live: Live, fetchNext: boolean): Promise<unknown> => {
      const { worker, jobId, token } = live
      const backend = worker.backend
      let sent: Promise<unknown>
      try {
        const args = backend.moveToCompletedArgs(bullJob(jobId), "null", removeOnComplete, token, fetchNext)
        const bull = bullClients.get(worker)
        if (bull !== undefined) {
          sent = backend.execCommand(bull, "moveToFinished", args)
          // the acks of handlers ending in this same tick go out with the next write, together
          holdRestOfTick(bull)
        } else {
          sent = backend.client.then((c) => backend.execCommand(c, "moveToFinished", args))
        }
      } catch (error) {
        return Promise.reject(error)
      }
      return sent.then((reply) => {
        if (typeof reply === "number" && reply < 0) {
          throw backend.finishedErrors({ code: reply, jobId, command: "moveToFinished", state: "active" })
        }
        return reply
      })
    }

    /** The job a `moveToFinished` with fetchNext returned: `[hash fields, id, …]`, locked with the acked job's token. */
    const fromFinishedReply = (reply: unknown, acked: Live): Live | undefined => {
      if (!Array.isArray(reply) || !Array.isArray(reply[0]) || reply[1] == null) return undefined
      const fields = reply[0] as ReadonlyArray<unknown>
      let data = ""
      let attemptsStarted = 0
      for (let i = 0; i + 1 < fields.length; i += 2) {
        const field = fields[i]
        if (field === "data") data = String(fields[i + 1])
        else if (field === "ats") attemptsStarted = Number(fields[i + 1]) || 0
      }
      return {
        jobId: String(reply[1]),
        data,
        attemptsStarted,
        token: acked.token,
        queue: acked.queue,
        worker: acked.worker,
        fetchedAt: Date.now(),
        settle: "open"
      }
    }

    const makeDelivery = (live: Live): Broker.Delivery => {
      const { jobId, token, queue, worker } = live
      const id = fromJobId(jobId)
      return {
        id,
        body: bodyOf(live.data),
        receiveCount: Math.max(1, live.attemptsStarted || 1),
        ack: settle(live, "ack", () => {
          const fetchNext =
            !closing &&
            (markerWaits.get(queue) ?? 0) === 0 &&
            (prefetched.get(queue)?.length ?? 0) + (fetching.get(queue) ?? 0) < (inFlight.get(queue) ?? 0)
          if (!fetchNext) return complete(live, false)
          fetching.set(queue, (fetching.get(queue) ?? 0) + 1)
          return complete(live, true).then(
            (reply) => {
              keepPrefetched(fromFinishedReply(reply, live))
              fetchSettled(queue)
            },
            (error: unknown) => {
              fetchSettled(queue)
              throw error
            }
          )
        }),
        retry: ({ body, delay }) =>
          settle(live, "retry", () =>
            worker.backend.moveToDelayed(jobId, Date.now(), Math.max(0, Math.ceil(delay)), token, {
              skipAttempt: false,
              fieldsToUpdate: { data: JSON.stringify(body) }
            })
          ),
        deadLetter: (record) =>
          settle(live, "deadLetter", async () => {
            const keys = queueKeys(prefix, queue)
            const entry: Broker.DeadLetterEntry = { id, ...record }
            const recorded = await client.eval(
              deadLetterScript,
              3,
              keys.lock(id),
              keys.deadLetters,
              keys.deadLetterOrder,
              token,
              id,
              JSON.stringify(entry),
              String(record.failedAt)
            )
            if (recorded !== 1) throw new Error(`Missing lock for job ${id}: the lease was lost`)
            try {
              // BullMQ keeps the failed job (removeOnFail: false), which holds the id against re-sends.
              const job = new Job(worker, jobName, null, { attempts: 1, removeOnFail: false }, jobId)
              await job.moveToFailed(new Error(record.error.slice(0, 2000)), token, false)
            } catch (error) {
              if (/Missing lock|Lock mismatch|not in the active/iu.test(String(error))) {
                await client.multi().hdel(keys.deadLetters, id).zrem(keys.deadLetterOrder, id).exec()
              }
              throw error
            }
          }),
        extendLease: (ms) =>
          Effect.suspend(() =>
            outstanding.has(live)
              ? redis("extendLease", async () => {
                  const ok = await worker.backend.extendLock(jobId, token, Math.max(1, Math.ceil(ms)))
                  if (!ok) throw new Error(`Missing lock for job ${id}: the lease was lost`)
                })
              : Effect.void
          ),
        release: settle(live, "release", () =>
          worker.backend.moveJobFromActiveToWait(jobId, token).then(() => wake(queue))
        )
      }
    }

    /**
     * After a job went back to wait: BullMQ's script sets the marker only for a job without
     * priority, so with priorities blocked takes (here and in other processes) are woken here. A
     * marker too many only costs a fetch that finds nothing.
     */
    const wake = (queue: string): Promise<unknown> => {
      drained.delete(queue)
      return prioritized ? client.zadd(queueKeys(prefix, queue).marker, 0, "0").catch(noop) : Promise.resolve()
    }

    const deliver = (live: Live): Broker.Delivery => {
      inFlight.set(live.queue, (inFlight.get(live.queue) ?? 0) + 1)
      return makeDelivery(live)
    }

    /**
     * Give a prefetched job back to wait (unlocked); a lost lock only means it is already back. It
     * was never delivered, so its receive count (BullMQ's attemptsStarted) is taken back too.
     */
    const giveBack = (live: Live) => {
      outstanding.delete(live)
      return live.worker.backend
        .moveJobFromActiveToWait(live.jobId, live.token)
        .then(() =>
          Promise.all([client.eval(uncountScript, 1, `${prefix}:${live.queue}:${live.jobId}`), wake(live.queue)])
        )
        .catch(noop)
    }

    /** Keep the job an ack's moveToFinished returned for the next take of its queue. */
    const keepPrefetched = (live: Live | undefined) => {
      if (live === undefined) return
      outstanding.add(live)
      if (closing) {
        void giveBack(live)
        return
      }
      let list = prefetched.get(live.queue)
      if (!list) prefetched.set(live.queue, (list = []))
      list.push(live)
      if (!sweepers.has(live.queue)) sweep(live.queue, live.worker)
    }

    /** Jobs nobody took soon enough (the worker stopped, or is rate limited) go back to wait. */
    const sweep = (queue: string, worker: Worker) => {
      const hold = Math.min(maxPrefetchHold, Math.max(10, Math.floor((worker.opts.lockDuration ?? 30_000) / 4)))
      const oldest = prefetched.get(queue)?.[0]
      if (oldest === undefined) return
      const timer = setTimeout(
        () => {
          sweepers.delete(queue)
          const list = prefetched.get(queue) ?? []
          const cutoff = Date.now() - hold
          while (list.length > 0 && list[0]!.fetchedAt <= cutoff) void giveBack(list.shift()!)
          sweep(queue, worker)
        },
        Math.max(1, oldest.fetchedAt + hold - Date.now())
      )
      timer.unref?.()
      sweepers.set(queue, timer)
    }

    const takePrefetched = (queue: string, max: number): Array<Broker.Delivery> => {
      const list = prefetched.get(queue)
      if (!list || list.length === 0) return []
      const taken = list.length <= max ? list.splice(0) : list.splice(0, max)
      const out = new Array<Broker.Delivery>(taken.length)
      for (let i = 0; i < taken.length; i++) out[i] = deliver(taken[i]!)
      return out
    }

    /** When the next delayed job of a queue is due, as BullMQ's moveToActive last reported it. */
    const nextDue = new Map<string, number>()

    /**
     * Lock up to `max` jobs: batches of 1, 2, 4… until `max` or a batch comes back short (then the
     * queue is drained). `firstOnly`: return the first jobs found at once (a take woken by the
     * marker: the queue was empty a moment ago, and the job should start without another round trip).
     */
    const fetchJobs = (worker: Worker, queue: string, max: number, lease: number, firstOnly: boolean) =>
      Effect.uninterruptible(
        redis("take", async () => {
          // The lease is read by BullMQ's moveToActive from the worker options at each call.
          ;(worker.opts as { lockDuration: number }).lockDuration = Math.max(1, Math.ceil(lease))
          const got: Array<Broker.Delivery> = []
          let batch = 1
          while (got.length < max && !closing) {
            const tokens = Array.from({ length: Math.min(batch, max - got.length) }, () => randomUUID())
            const results = await Promise.allSettled(tokens.map((token) => worker.backend.moveToActive(token)))
            let empty = false
            for (let i = 0; i < results.length; i++) {
              const result = results[i]!
              if (result.status === "rejected") {
                if (got.length === 0) throw result.reason
                empty = true
                continue
              }
              // [job (decoded hash) | null, id, rate-limit delay, next delayed job due]
              const [json, jobId, , delayUntil] = result.value as [
                { data?: string; attemptsStarted?: number; id?: string } | null,
                unknown,
                unknown,
                unknown
              ]
              const none = json == null || jobId == null
              // the due time an empty result reported is what the wait that follows needs: a later
              // result of the same batch (a job added meanwhile) does not overwrite it
              if (none || !empty) nextDue.set(queue, Math.max(0, Number(delayUntil) || 0))
              if (none) {
                empty = true
                drained.add(queue)
                continue
              }
              const live: Live = {
                jobId: String(json.id ?? jobId),
                data: json.data ?? "",
                attemptsStarted: json.attemptsStarted ?? 0,
                token: tokens[i]!,
                queue,
                worker,
                fetchedAt: Date.now(),
                settle: "open"
              }
              outstanding.add(live)
              got.push(deliver(live))
            }
            if (empty || (firstOnly && got.length > 0)) break
            batch *= 2
          }
          return got
        })
      )

    const readyClient = (c: Redis, timeout: number) =>
      new Promise<void>((resolve, reject) => {
        if (c.status === "ready") return resolve()
        const timer = setTimeout(() => {
          cleanup()
          reject(Object.assign(new Error("connect timed out"), { code: "ETIMEDOUT" }))
        }, timeout)
        const onReady = () => {
          cleanup()
          resolve()
        }
        const cleanup = () => {
          clearTimeout(timer)
          c.off("ready", onReady)
        }
        c.on("ready", onReady)
        if (c.status === "wait") c.connect().catch(noop)
      })

    /** Block on the queue's marker (BullMQ's wake-up signal) for at most `ms`. */
    const waitForMarker = (queue: string, ms: number) =>
      Effect.tryPromise({
        try: async (signal) => {
          let blocking = idleBlocking.pop()
          if (!blocking) {
            blocking = client.duplicate({
              commandTimeout: undefined,
              lazyConnect: true,
              maxRetriesPerRequest: 0,
              connectionName: `errand-blocking@${prefix}`
            })
            blocking.on("error", noop)
          }
          busyBlocking.add(blocking)
          const drop = () => {
            busyBlocking.delete(blocking)
            blocking.disconnect()
          }
          signal.addEventListener("abort", drop, { once: true })
          let timer: ReturnType<typeof setTimeout> | undefined
          try {
            await readyClient(blocking, Math.max(ms, 100))
            const seconds = Math.max(0.01, Math.round(ms) / 1000)
            const watchdog = new Promise<"watchdog">(
              (resolve) => (timer = setTimeout(() => resolve("watchdog"), ms + 1000))
            )
            const result = await Promise.race([blocking.bzpopmin(queueKeys(prefix, queue).marker, seconds), watchdog])
            if (result === "watchdog") throw Object.assign(new Error("blocking wait timed out"), { code: "ETIMEDOUT" })
            signal.removeEventListener("abort", drop)
            busyBlocking.delete(blocking)
            if (!closing && idleBlocking.length < 8) idleBlocking.push(blocking)
            else blocking.disconnect()
          } catch (error) {
            signal.removeEventListener("abort", drop)
            drop()
            throw error
          } finally {
            if (timer) clearTimeout(timer)
          }
        },
        catch: fail("take")
      })

    /** Whether acks' fetches in flight that no take waits for yet are at least `max`. */
    const pendingFetchesCover = (queue: string, max: number) =>
      !closing && (fetching.get(queue) ?? 0) - (fetchWaiters.get(queue)?.length ?? 0) >= max

    /** Wait until an ack's fetch in flight settles (each settled fetch wakes one waiter). */
    const waitForFetch = (queue: string) =>
      Effect.callback<void>((resume) => {
        let waiters = fetchWaiters.get(queue)
        if (!waiters) fetchWaiters.set(queue, (waiters = []))
        const wake = () => resume(Effect.void)
        waiters.push(wake)
        return Effect.sync(() => {
          const i = waiters.indexOf(wake)
          if (i >= 0) waiters.splice(i, 1)
        })
      })

    /**
     * Hand out jobs an ack fetched, else fetch, else block on the marker until `deadline`. A drained
     * queue is not fetched before the wait (its marker says when a job comes), unless there is no
     * time left to wait. Never blocks on the marker while an ack's fetch is in flight: its job would
     * go unseen.
     */
    const fetchOrWait = (queue: string, worker: Worker, max: number, lease: number, wait: number, deadline: number) =>
      Effect.gen(function* () {
        let woken = false
        while (true) {
          const ready = takePrefetched(queue, max)
          if (ready.length > 0) return ready
          // Acks fetching jobs nobody else waits for, enough of them for this take: wait for them
          // rather than spend scripts of our own (the usual case: a worker takes again as soon as a
          // handler ends, before its ack is back). A take that wants more fetches its own.
          if (pendingFetchesCover(queue, max)) {
            yield* waitForFetch(queue)
            continue
          }
          const now = Date.now()
          if (!drained.has(queue) || now >= deadline || closing) {
            const jobs = yield* fetchJobs(worker, queue, max, lease, woken)
            if (jobs.length > 0 || closing || Date.now() >= deadline) return jobs
          }
          // never sleep in Redis while an ack brings a job, or has brought one while this take's
          // own fetch was out (another process's worker may have popped the marker it set)
          if (pendingFetchesCover(queue, 1)) {
            yield* waitForFetch(queue)
            continue
          }
          const brought = takePrefetched(queue, max)
          if (brought.length > 0) return brought
          const due = nextDue.get(queue) ?? 0
          const from = Date.now()
          let until = Math.min(deadline, from + maxBlockMs)
          if (due > from) until = Math.min(until, due)
          markerWaits.set(queue, (markerWaits.get(queue) ?? 0) + 1)
          yield* Effect.ensuring(
            waitForMarker(queue, Math.max(1, until - from)),
            Effect.sync(() => {
              markerWaits.set(queue, (markerWaits.get(queue) ?? 1) - 1)
              // woken by a marker or by the time bound: either way, fetch before blocking again
              drained.delete(queue)
            })
          )
          woken = true
        }
      }).pipe(
        Effect.catchTag("BrokerError", (error) =>
          // While Redis is away, do not let a polling loop spin: wait out `wait` first.
          error.reason === "Connection" && wait > 0
            ? Effect.flatMap(Effect.sleep(Math.min(wait, 1000)), () => Effect.fail(error))
            : Effect.fail(error)
        )
      )

    const take: Broker.BrokerShape["take"] = (queue, { max, lease, wait }) =>
      Effect.suspend(() => {
        if (max <= 0) return Effect.succeed([])
        const worker = getWorker(queue, lease)
        // Under load an ack has usually fetched the next job already: hand it out without a script.
        const ready = takePrefetched(queue, max)
        if (ready.length > 0) return Effect.succeed(ready)
        const deadline = Date.now() + Math.max(0, wait)
        if (!pendingFetchesCover(queue, max)) return fetchOrWait(queue, worker, max, lease, wait, deadline)
        // the usual case under load, kept free of fetchOrWait's loop
        return Effect.flatMap(waitForFetch(queue), () => {
          const fetched = takePrefetched(queue, max)
          return fetched.length > 0 ? Effect.succeed(fetched) : fetchOrWait(queue, worker, max, lease, wait, deadline)
        })
      })

    // ---- dead letters --------------------------------------------------------------------

    const parseEntry = (raw: string | null): Option.Option<Broker.DeadLetterEntry> => {
      if (raw === null) return Option.none()
      try {
        return Option.some(JSON.parse(raw) as Broker.DeadLetterEntry)
      } catch {
        return Option.none()
      }
    }

    const removeFailedJob = async (queue: string, id: string) => {
      const q = getQueue(queue)
      const state = await q.getJobState(toJobId(id))
      if (state === "failed") await q.remove(toJobId(id))
      return state
    }

    const deadLetters: Broker.DeadLetterStore = {
      list: (queue, { offset, limit }) =>
        redis("deadLetters.list", async () => {
          if (limit <= 0) return []
          const keys = queueKeys(prefix, queue)
          const ids = await client.zrange(
            keys.deadLetterOrder,
            String(Math.max(0, offset)),
            String(Math.max(0, offset) + limit - 1)
          )
          if (ids.length === 0) return []
          const raws = await client.hmget(keys.deadLetters, ...ids)
          return raws.flatMap((raw) => Option.toArray(parseEntry(raw)))
        }),
      get: (queue, id) =>
        redis("deadLetters.get", async () => parseEntry(await client.hget(queueKeys(prefix, queue).deadLetters, id))),
      count: (queue) => redis("deadLetters.count", () => client.hlen(queueKeys(prefix, queue).deadLetters)),
      redrive: (queue, { ids, prepare }) =>
        Effect.gen(function* () {
          const keys = queueKeys(prefix, queue)
          const redriveOne = Effect.fnUntraced(function* (id: string) {
            const entry = yield* redis("deadLetters.redrive", () => client.hget(keys.deadLetters, id)).pipe(
              Effect.map(parseEntry)
            )
            if (Option.isNone(entry)) {
              // an order entry without its record (or an id that is not there): nothing to send
              yield* redis("deadLetters.redrive", () => client.zrem(keys.deadLetterOrder, id))
              return 0
            }
            const message = prepare(entry.value)
            // The failed BullMQ job holds the id: free it first. A job in any other state means an
            // earlier redrive already sent it and only the entry removal was lost.
            const state = yield* redis("deadLetters.redrive", () => removeFailedJob(queue, id))
            const alreadySent = state !== "failed" && state !== "unknown" && message.id === id
            if (!alreadySent) {
              const [result] = yield* sendInternal(queue, [message], false)
              if (result?.duplicate && (result.existingState === "failed" || result.existingState === "dead")) {
                return yield* new Errors.BrokerError({
                  reason: "Unknown",
                  operation: "deadLetters.redrive",
                  message: `Redis ${endpoint}: redrive of ${id} refused, a job with id ${message.id} is ${result.existingState}`
                })
              }
            }
            // only now that the message is confirmed (at-least-once)
            yield* redis("deadLetters.redrive", () =>
              client.multi().hdel(keys.deadLetters, id).zrem(keys.deadLetterOrder, id).exec()
            )
            return 1
          })
          let moved = 0
          if (ids !== undefined) {
            for (const id of ids) moved += yield* redriveOne(id)
            return moved
          }
          // All: oldest first, page by page from the head (each entry handled leaves the order set),
          // bounded by the count at the start so that jobs dead-lettered again meanwhile are not
          // picked up in a loop.
          let remaining = yield* redis("deadLetters.redrive", () => client.zcard(keys.deadLetterOrder))
          while (remaining > 0) {
            const page = yield* redis("deadLetters.redrive", () =>
              client.zrange(keys.deadLetterOrder, "0", String(Math.min(100, remaining) - 1))
            )
            if (page.length === 0) break
            for (const id of page) moved += yield* redriveOne(id)
            remaining -= page.length
          }
          return moved
        }),
      purge: (queue, ids) =>
        redis("deadLetters.purge", async () => {
          const keys = queueKeys(prefix, queue)
          const purgeChunk = async (chunk: ReadonlyArray<string>) => {
            const replies =
              (await client
                .multi()
                .hdel(keys.deadLetters, ...chunk)
                .zrem(keys.deadLetterOrder, ...chunk)
                .exec()) ?? []
            // the failed BullMQ jobs go too, which frees their ids
            for (const id of chunk) await removeFailedJob(queue, id).catch(noop)
            return Number(replies[0]?.[1] ?? 0)
          }
          let deleted = 0
          if (ids !== undefined) {
            for (let i = 0; i < ids.length; i += 500) deleted += await purgeChunk(ids.slice(i, i + 500))
            return deleted
          }
          while (true) {
            const page = await client.zrange(keys.deadLetterOrder, "0", "499")
            if (page.length === 0) break
            deleted += await purgeChunk(page)
          }
          // records whose order entry was lost
          const stray = await client.hkeys(keys.deadLetters)
          for (let i = 0; i < stray.length; i += 500) deleted += await purgeChunk(stray.slice(i, i + 500))
          return deleted
        })
    }

    // ---- stats and deletion ----------------------------------------------------------------

    const stats: Broker.BrokerShape["stats"] = (queue) =>
      redis("stats", async () => {
        const [counts, dead] = await Promise.all([
          getQueue(queue).getJobCounts("wait", "prioritized", "waiting-children", "active", "delayed"),
          client.hlen(queueKeys(prefix, queue).deadLetters)
        ])
        const n = (k: string) => Number(counts[k] ?? 0)
        return {
          waiting: n("wait") + n("prioritized") + n("waiting-children"),
          active: n("active"),
          delayed: n("delayed"),
          dead
        }
      })

    const deleteQueue: Broker.BrokerShape["deleteQueue"] = (queue) =>
      redis("deleteQueue", async () => {
        const keys = queueKeys(prefix, queue)
        await getQueue(queue).obliterate({ force: true })
        await client.del(keys.deadLetters, keys.deadLetterOrder)
        // Whatever is left under the queue's keyspace (markers, events, stray jobs).
        let cursor = "0"
        do {
          const [next, found] = await client.scan(cursor, "MATCH", `${keys.base}:*`, "COUNT", 500)
          cursor = next
          if (found.length > 0) await client.unlink(...found)
        } while (cursor !== "0")
        for (const live of outstanding) if (live.queue === queue) outstanding.delete(live)
        prefetched.delete(queue)
        inFlight.delete(queue)
        drained.delete(queue)
      })

    // ---- shutdown --------------------------------------------------------------------------

    yield* Effect.addFinalizer(() =>
      Effect.promise(async () => {
        closing = true
        for (const timer of sweepers.values()) clearTimeout(timer)
        sweepers.clear()
        prefetched.clear()
        const bounded = (p: Promise<unknown>, ms: number) =>
          Promise.race([p.catch(noop), new Promise((r) => setTimeout(r, ms).unref?.())])
        // Unsettled deliveries go back to wait now rather than after their lease.
        await bounded(
          Promise.all(
            [...outstanding].map((live) =>
              live.worker.backend
                .moveJobFromActiveToWait(live.jobId, live.token)
                .then(() => wake(live.queue))
                .catch(noop)
            )
          ),
          3000
        )
        outstanding.clear()
        for (const c of [...idleBlocking, ...busyBlocking]) c.disconnect()
        await bounded(Promise.all([...workers.values()].map((w) => w.close(true))), 3000)
        await bounded(Promise.all([...queues.values()].map((q) => q.close())), 2000)
        if (workerClient) {
          const wc = workerClient
          await bounded(wc.quit(), 1000)
          wc.disconnect()
        }
      })
    )

    return BullMQBroker.of({
      name: "bullmq",
      capabilities: capabilitiesFor(options),
      prefix,
      endpoint,
      evictionPolicy,
      // BullMQ takes any name core accepts; the prefix carries any Cluster hash tag.
      validateQueueName: () => undefined,
      send: (queue, messages) => retryTransient(sendInternal(queue, messages, true)),
      take,
      deadLetters,
      stats,
      deleteQueue
    })
  })

/**
 * A layer providing both `BullMQBroker` and core's `Broker.Broker`.
 *
 * @example
 * ```ts
 * const BrokerLive = BullMQBroker.layer({ url: process.env.REDIS_URL, prefix: "{errand}", evictionPolicy: "refuse" })
 * ```
 *
 * @since 0.1.0
 */
export const layer = (options: Options = {}): Layer.Layer<BullMQBroker | Broker.Broker, LayerError> => {
  const own = Layer.effect(BullMQBroker, make(options))
  return Layer.effect(
    Broker.Broker,
    Effect.map(BullMQBroker, (broker): Broker.BrokerShape => broker)
  ).pipe(Layer.provideMerge(own))
}

/**
 * A layer reading its options from `Config`: `REDIS_URL` (default `redis://127.0.0.1:6379`) and
 * `ERRAND_PREFIX` (default `errand`) unless other configs are given.
 *
 * @since 0.1.0
 */
export const layerConfig = (
  config: {
    readonly url?: Config.Config<Redacted.Redacted<string>>
    readonly prefix?: Config.Config<string>
  } = {},
  options: Omit<Options, "url" | "connection" | "prefix"> = {}
): Layer.Layer<BullMQBroker | Broker.Broker, LayerError | Config.ConfigError> =>
  Layer.unwrap(
    Effect.gen(function* () {
      const url = config.url ? Option.some(yield* config.url) : yield* Config.Redacted("REDIS_URL").pipe(Config.option)
      const prefix = yield* config.prefix ?? Config.String("ERRAND_PREFIX").pipe(Config.withDefault("errand"))
      return layer({ ...options, prefix, ...(Option.isSome(url) ? { url: url.value } : {}) })
    })
  )
