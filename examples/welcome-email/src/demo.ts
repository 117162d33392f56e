/**
 * The demo driver: runs the whole scenario in one process on the memory broker, prints what
 * happened, checks it, and exits 0 only if every check holds.
 *
 * Time: the app runs on Effect's `TestClock`, set to 07:30 UTC. HTTP requests are real (a server
 * on an ephemeral port, `fetch`), processing is real, and the demo moves the clock forward: in
 * one-second steps through the retries (1 s, 2 s, 4 s, 8 s), by an hour for the reminders, and to
 * 09:00 for the daily digest. So the run takes a second or two, and its outcome is exact.
 *
 * Last, SIGTERM is shown for real: `dist/main.js` runs as a child process on the live clock, gets
 * a request, is sent SIGTERM while the email is in flight, and must finish it and exit 0.
 *
 * @since 0.0.0
 */
import { DeadLetters, Queues } from "@errand/core"
import * as MemoryBroker from "@errand/testing/MemoryBroker"
import { Effect } from "effect"
import { TestClock } from "effect/testing"
import { spawn } from "node:child_process"
import { existsSync } from "node:fs"
import { fileURLToPath } from "node:url"
import * as App from "./app.js"
import * as Jobs from "./jobs.js"
import { Mailer } from "./mailer.js"

const startTime = Date.UTC(2026, 10, 27, 7, 30, 0) // Friday 27 November 2026, 07:30 UTC
const hour = 60 * 60 * 1000

const users = ["alice", "bob", "carol", "dave"] as const
/** The mailer's plan: alice's welcome fails twice, carol's once, dave's always (→ DLQ). */
const mailerPlan = { failFirst: { alice: 2, carol: 1 }, alwaysFail: ["dave"] }

const clock = (ms: number) => new Date(ms).toISOString().slice(11, 19)
const since = (ms: number, from: number) => `+${((ms - from) / 1000).toFixed(0)}s`
const print = (line = "") => Effect.sync(() => console.log(line))
const heading = (title: string) => print(`\n== ${title}`)

interface Reply {
  readonly label: string
  readonly status: number
  readonly body: Record<string, unknown>
}

const checks: Array<{ readonly name: string; readonly ok: boolean; readonly detail: string }> = []
const check = (name: string, ok: boolean, detail = "") => {
  checks.push({ name, ok, detail })
}

/** Real-time pause (the app's clock is the TestClock, which only moves when told). */
const pause = (ms: number) => TestClock.withLive(Effect.sleep(ms))

/** Wait until the queue has nothing waiting or running. */
const settle = Effect.gen(function* () {
  for (let i = 0; i < 2000; i++) {
    const s = yield* Queues.stats(Jobs.queue)
    if (s.waiting === 0 && s.active === 0) return
    yield* pause(5)
  }
  return yield* Effect.die(new Error("the queue did not settle within 10 s"))
})

/** Move the clock forward in `step`s, letting the worker settle after each. */
const advance = (total: number, step = 1000) =>
  Effect.gen(function* () {
    for (let t = 0; t < total; t += step) {
      yield* TestClock.adjust(Math.min(step, total - t))
      yield* settle
    }
  })

const scenario = Effect.gen(function* () {
  yield* TestClock.setTime(startTime)
  const server = yield* App.start({ port: 0 })
  const mailer = yield* Mailer
  const post = (label: string, body: string) =>
    Effect.tryPromise(async (): Promise<Reply> => {
      const response = await fetch(`${server.url}/api/welcome-email`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body
      })
      return { label, status: response.status, body: (await response.json()) as Record<string, unknown> }
    })

  yield* print(`Welcome-email demo: memory broker, API on ${server.url}, clock at ${new Date(startTime).toISOString()}`)

  // --- 1. requests --------------------------------------------------------------------------
  yield* heading("1. HTTP requests")
  const replies: Array<Reply> = []
  for (const user of users) replies.push(yield* post(user, JSON.stringify({ userId: user })))
  replies.push(yield* post("alice again (duplicate)", JSON.stringify({ userId: "alice" })))
  const bad: Array<Reply> = []
  bad.push(yield* post("not JSON", "{userId: alice"))
  bad.push(yield* post("missing userId", JSON.stringify({ user: "erin" })))
  bad.push(yield* post("empty userId", JSON.stringify({ userId: "" })))
  bad.push(yield* post("userId not a string", JSON.stringify({ userId: 42 })))
  for (const r of replies) {
    yield* print(
      `  POST ${r.label.padEnd(24)} → ${r.status} id=${String(r.body["id"])} duplicate=${String(r.body["duplicate"])}`
    )
  }
  for (const r of bad) yield* print(`  POST ${r.label.padEnd(24)} → ${r.status} ${String(r.body["reason"])}`)

  check(
    "every valid request is answered 202",
    replies.every((r) => r.status === 202),
    replies.map((r) => r.status).join(",")
  )
  const firstAlice = replies[0]!
  const dupAlice = replies[4]!
  check(
    "the duplicate request gets the first job's id, marked duplicate",
    dupAlice.body["id"] === firstAlice.body["id"] &&
      dupAlice.body["duplicate"] === true &&
      firstAlice.body["duplicate"] === false
  )
  check(
    "every bad body is answered 400 with a reason",
    bad.every((r) => r.status === 400 && typeof r.body["reason"] === "string"),
    bad.map((r) => r.status).join(",")
  )

  // --- 2. processing and retries ------------------------------------------------------------
  yield* settle
  yield* advance(20_000)
  const calls = yield* mailer.calls
  const sent = yield* mailer.sent
  const welcomes = sent.filter((e) => e.template === "welcome")

  yield* heading(`2. Welcome emails (clock now ${clock(startTime + 20_000)})`)
  for (const e of welcomes)
    yield* print(`  sent to ${e.to.padEnd(6)} at ${clock(e.sentAt)} (${since(e.sentAt, startTime)})`)

  yield* heading("3. Mailer calls and retries (exponential backoff: 1 s, 2 s, 4 s, 8 s; 5 attempts)")
  for (const user of users) {
    const mine = calls.filter((c) => c.to === user && c.template === "welcome")
    yield* print(
      `  ${user.padEnd(6)} ${mine.map((c, i) => `#${i + 1} ${since(c.at, startTime)} ${c.ok ? "ok" : "failed"}`).join(", ")}`
    )
  }

  const dead = yield* DeadLetters.list(Jobs.queue)
  yield* heading("4. Dead-letter queue")
  for (const d of dead) {
    yield* print(
      `  ${d.id} job=${d.envelope?.job} payload=${JSON.stringify(d.envelope?.payload)} attempts=${d.attempts} reason=${d.reason}`
    )
    yield* print(`    error: ${d.error}`)
  }
  const afterWelcome = yield* Queues.stats(Jobs.queue)
  yield* heading("5. Queue stats after the welcome emails")
  yield* print(`  ${JSON.stringify(afterWelcome)}  (the delayed ones are the three reminders)`)

  const welcomedUsers = welcomes.map((e) => e.to).sort()
  check(
    "exactly one welcome email per user, none for dave",
    JSON.stringify(welcomedUsers) === JSON.stringify(["alice", "bob", "carol"]),
    welcomedUsers.join(",")
  )
  const count = (user: string) => calls.filter((c) => c.to === user && c.template === "welcome").length
  check(
    "alice: 2 failures then success (3 calls); bob 1; carol 2",
    count("alice") === 3 && count("bob") === 1 && count("carol") === 2
  )
  const daveGaps = calls
    .filter((c) => c.to === "dave")
    .map((c, i, all) => (i === 0 ? 0 : c.at - all[i - 1]!.at))
    .slice(1)
  check(
    "dave: 5 attempts, retried after 1 s, 2 s, 4 s, 8 s",
    JSON.stringify(daveGaps) === "[1000,2000,4000,8000]",
    JSON.stringify(daveGaps)
  )
  check(
    "dave's job is in the DLQ with 5 attempts and the mailer's error",
    dead.length === 1 &&
      dead[0]!.attempts === 5 &&
      dead[0]!.reason === "exhausted" &&
      dead[0]!.error.includes("MailerError") &&
      JSON.stringify(dead[0]!.envelope?.payload) === JSON.stringify({ userId: "dave" }),
    `${dead.length} dead letter(s)`
  )
  check(
    "stats: nothing waiting or active, 3 reminders delayed, 1 dead",
    afterWelcome.waiting === 0 && afterWelcome.active === 0 && afterWelcome.delayed === 3 && afterWelcome.dead === 1,
    JSON.stringify(afterWelcome)
  )

  // --- 3. reminders -------------------------------------------------------------------------
  yield* TestClock.setTime(startTime + hour - 1000)
  yield* settle
  const beforeHour = (yield* mailer.sent).filter((e) => e.template === "reminder")
  yield* advance(10_000)
  const reminders = (yield* mailer.sent).filter((e) => e.template === "reminder")
  yield* heading("6. Reminders (one hour after each welcome email)")
  yield* print(`  at ${clock(startTime + hour - 1000)}: ${beforeHour.length} reminder(s) sent`)
  for (const r of reminders) {
    const welcome = welcomes.find((w) => w.to === r.to)
    yield* print(
      `  reminder to ${r.to.padEnd(6)} at ${clock(r.sentAt)} (welcome at ${welcome ? clock(welcome.sentAt) : "?"})`
    )
  }
  check("no reminder before the hour", beforeHour.length === 0)
  check(
    "one reminder per welcomed user, exactly one hour after the welcome email",
    reminders.length === 3 && reminders.every((r) => welcomes.find((w) => w.to === r.to)?.sentAt === r.sentAt - hour),
    reminders.map((r) => r.to).join(",")
  )

  // --- 4. a repeat request after the broker's dedup window ------------------------------------
  const callsBefore = (yield* mailer.calls).length
  const again = yield* post("alice, an hour later", JSON.stringify({ userId: "alice" }))
  yield* settle
  yield* advance(2000)
  const callsAfter = (yield* mailer.calls).length
  const daveAgain = yield* post("dave again", JSON.stringify({ userId: "dave" }))
  yield* heading("7. alice and dave ask again an hour later")
  yield* print(
    `  POST alice → ${again.status} id=${String(again.body["id"])} duplicate=${String(again.body["duplicate"])}`
  )
  yield* print(
    `    mailer calls before ${callsBefore}, after ${callsAfter}: the worker's idempotency guard acknowledged the job without sending`
  )
  yield* print(`  POST dave  → ${daveAgain.status} ${String(daveAgain.body["reason"])}`)
  check(
    "a repeat request after the broker forgot the job sends nothing",
    again.status === 202 && callsAfter === callsBefore
  )
  check("a request for a dead-lettered job is answered 409", daveAgain.status === 409)

  // --- 5. the daily digest ------------------------------------------------------------------
  yield* TestClock.setTime(Date.UTC(2026, 10, 27, 8, 59, 59))
  yield* settle
  const digestsBefore = (yield* mailer.sent).filter((e) => e.template === "digest").length
  yield* advance(5000)
  const digests = (yield* mailer.sent).filter((e) => e.template === "digest")
  yield* heading('8. Daily digest (cron "0 9 * * *", UTC)')
  for (const d of digests) yield* print(`  at ${clock(d.sentAt)} to ${d.to}: "${d.subject}" — ${d.text}`)
  check("no digest before 09:00", digestsBefore === 0)
  check(
    "one digest at 09:00:00 for 2026-11-27, counting the 3 welcomed users",
    digests.length === 1 &&
      digests[0]!.sentAt === Date.UTC(2026, 10, 27, 9, 0, 0) &&
      digests[0]!.subject.endsWith("2026-11-27") &&
      digests[0]!.text.startsWith("3 new user(s)"),
    digests.map((d) => `${clock(d.sentAt)} ${d.text}`).join("; ")
  )

  const allWelcomes = (yield* mailer.sent)
    .filter((e) => e.template === "welcome")
    .map((e) => e.to)
    .sort()
  check(
    "at the end, still exactly one welcome email per user",
    JSON.stringify(allWelcomes) === JSON.stringify(["alice", "bob", "carol"]),
    allWelcomes.join(",")
  )

  const final = yield* Queues.stats(Jobs.queue)
  yield* heading("9. Final queue stats")
  yield* print(`  ${JSON.stringify(final)}`)
  check(
    "final stats: nothing waiting, active or delayed; 1 dead",
    final.waiting === 0 && final.active === 0 && final.delayed === 0 && final.dead === 1,
    JSON.stringify(final)
  )
})

/** SIGTERM on the real server process: the in-flight email must still go out, exit code 0. */
const sigterm = Effect.gen(function* () {
  yield* heading("10. SIGTERM on the real server (dist/main.js, live clock)")
  const main = fileURLToPath(new URL("./main.js", import.meta.url))
  if (!existsSync(main)) {
    yield* print(`  skipped: ${main} not built`)
    check(
      "SIGTERM finishes the in-flight job and exits 0",
      false,
      "dist/main.js missing (run through `pnpm demo`, which builds it)"
    )
    return
  }
  const result = yield* Effect.tryPromise(
    () =>
      new Promise<{ code: number | null; output: string; status: number }>((resolve, reject) => {
        const child = spawn(process.execPath, [main], {
          env: {
            ...process.env,
            ERRAND_BROKER: "memory",
            PORT: "0",
            MAILER_FAILURE_RATE: "0",
            MAILER_LATENCY_MS: "1000"
          },
          stdio: ["ignore", "pipe", "pipe"]
        })
        let output = ""
        let status = 0
        let sentRequest = false
        const timer = setTimeout(() => {
          child.kill("SIGKILL")
          reject(new Error(`server did not exit in time:\n${output}`))
        }, 20_000)
        const onData = (chunk: Buffer) => {
          output += chunk.toString()
          const url = /listening on (http:\/\/[0-9.:]+)/.exec(output)?.[1]
          if (url && !sentRequest) {
            sentRequest = true
            const inFlight = async (): Promise<void> => {
              const stats = (await (await fetch(`${url}/api/stats`)).json()) as { active: number }
              if (stats.active > 0) return
              await new Promise((wait) => setTimeout(wait, 20))
              return inFlight()
            }
            fetch(`${url}/api/welcome-email`, { method: "POST", body: JSON.stringify({ userId: "erin" }) })
              .then(async (response) => {
                status = response.status
                // the fake mailer takes 1 s: signal once the email is in flight
                await inFlight()
                child.kill("SIGTERM")
              })
              .catch(reject)
          }
        }
        child.stdout.on("data", onData)
        child.stderr.on("data", onData)
        child.on("exit", (code) => {
          clearTimeout(timer)
          resolve({ code, output, status })
        })
      })
  )
  for (const line of result.output.trim().split("\n")) yield* print(`  | ${line}`)
  yield* print(`  exit code ${result.code}`)
  const signalAt = result.output.indexOf("SIGTERM")
  const sentAt = result.output.indexOf("sent welcome email to erin")
  check(
    "SIGTERM: the in-flight email is sent after the signal, then the process exits 0",
    result.status === 202 &&
      signalAt !== -1 &&
      sentAt > signalAt &&
      result.code === 0 &&
      result.output.includes("stopped cleanly"),
    `status ${result.status}, exit ${result.code}`
  )
})

const program = Effect.gen(function* () {
  yield* scenario.pipe(
    Effect.scoped,
    Effect.provide(App.layer({ broker: MemoryBroker.layer(), mailer: mailerPlan })),
    Effect.provide(TestClock.layer())
  )
  yield* sigterm
  yield* heading("Checks")
  for (const c of checks)
    yield* print(`  ${c.ok ? "✓" : "✗"} ${c.name}${c.ok || c.detail === "" ? "" : `  (got: ${c.detail})`}`)
  const failed = checks.filter((c) => !c.ok)
  if (failed.length > 0)
    return yield* Effect.fail(new Error(`${failed.length} check(s) failed: ${failed.map((c) => c.name).join("; ")}`))
  yield* print(`\nAll ${checks.length} checks passed.`)
})

const started = Date.now()
Effect.runPromise(program).then(
  () => {
    console.log(`(${((Date.now() - started) / 1000).toFixed(1)} s)`)
    process.exit(0)
  },
  (error: unknown) => {
    console.error(`\nDEMO FAILED: ${error instanceof Error ? error.message : String(error)}`)
    process.exit(1)
  }
)
