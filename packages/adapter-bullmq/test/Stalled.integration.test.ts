import { describe, expect, it } from "@effect/vitest"
import { Broker, type Errors } from "@errand/core"
import { Context, Effect, Exit, Layer, Scope } from "effect"
import { Redis } from "ioredis"
import { BullMQBroker } from "../src/index.js"
import { deleteKeys, message, redisUrl, takeN, uniquePrefix, uniqueQueue } from "./helpers.js"

/** Kill every Redis connection whose client name mentions `prefix` (a worker "dying"). */
const killConnections = (prefix: string) =>
  Effect.promise(async () => {
    const admin = new Redis(redisUrl)
    try {
      const list = (await admin.client("LIST")) as string
      const ids = list
        .split("\n")
        .filter((line) => line.includes(prefix))
        .map((line) => /\bid=(\d+)/u.exec(line)?.[1])
        .filter((id): id is string => id !== undefined)
      for (const id of ids) await admin.client("KILL", "ID", id).catch(() => 0)
      return ids.length
    } finally {
      admin.disconnect()
    }
  })

describe("stalled-job recovery", () => {
  it.live("a delivery taken and never settled by a worker whose connection dropped comes back after its lease", () =>
    Effect.gen(function* () {
      const prefix = uniquePrefix()
      const queue = uniqueQueue("stalled")
      const options = { url: redisUrl, prefix, stalledInterval: 250 }
      yield* Effect.addFinalizer(() => deleteKeys(prefix))

      // Worker A: takes the job with a short lease, then "dies" (its connections are dropped and it
      // never settles). Its scope is closed only at the very end.
      const scopeA = yield* Scope.make()
      const a = yield* Layer.buildWithScope(BullMQBroker.layer(options), scopeA).pipe(
        Effect.map((context) => Context.get(context, Broker.Broker))
      )
      yield* a.send(queue, [message("job-1", "payload")])
      const takenAt = Date.now()
      const [taken] = yield* takeN(a, queue, 1, { lease: 800 })
      expect(taken?.id).toBe("job-1")
      expect(yield* killConnections(prefix)).toBeGreaterThan(0)

      // Worker B (another process in real life): gets the job back once A's lease ran out.
      const b = yield* Layer.build(BullMQBroker.layer(options)).pipe(
        Effect.map((context) => Context.get(context, Broker.Broker))
      )
      const [back] = yield* takeN(b, queue, 1, { lease: 30_000, timeout: 15_000 })
      expect(back?.id).toBe("job-1")
      expect(back?.body).toBe("payload")
      expect(back?.receiveCount).toBe(2)
      // not before the lease ran out
      expect(Date.now() - takenAt).toBeGreaterThanOrEqual(800)

      // A's stale settle cannot touch the job that B now holds.
      const stale = yield* Effect.exit(taken!.ack)
      expect(Exit.isFailure(stale)).toBe(true)
      if (Exit.isFailure(stale)) {
        const error = stale.cause.reasons.find((r) => r._tag === "Fail")
        expect(error && "error" in error ? (error.error as Errors.BrokerError).reason : undefined).toBe("NotFound")
      }
      expect((yield* b.stats(queue)).active).toBe(1)
      yield* back!.ack
      expect(yield* b.stats(queue)).toEqual({ waiting: 0, active: 0, delayed: 0, dead: 0 })

      yield* Scope.close(scopeA, Exit.void)
      yield* b.deleteQueue(queue)
    }).pipe(Effect.scoped)
  )
})
