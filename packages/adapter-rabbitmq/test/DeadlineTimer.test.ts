import { describe, expect, it } from "vitest"
import { DeadlineTimer } from "../src/internal/deadlineTimer.js"

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/** Wait (at most 5 s, so a loaded machine only slows it) until `done` holds. */
const until = async (done: () => boolean) => {
  const limit = Date.now() + 5000
  while (!done() && Date.now() < limit) await sleep(5)
}

/** A set of deadlines swept by one timer, recording when each one was handled. */
const tracked = () => {
  const pending = new Set<number>()
  const handled: Array<{ deadline: number; at: number; sweep: number }> = []
  let sweeps = 0
  const timer = new DeadlineTimer((now) => {
    sweeps++
    let next = Infinity
    for (const deadline of [...pending]) {
      if (deadline <= now) {
        pending.delete(deadline)
        handled.push({ deadline, at: now, sweep: sweeps })
      } else if (deadline < next) next = deadline
    }
    return next
  }, false)
  const add = (deadline: number) => {
    pending.add(deadline)
    timer.schedule(deadline)
  }
  return { timer, add, handled, pending, sweeps: () => sweeps }
}

describe("DeadlineTimer", () => {
  it("handles each deadline once it has passed, earliest first, and stops when none is left", async () => {
    const t = tracked()
    const start = Date.now()
    // added out of order: the later ones must not push the first one back
    t.add(start + 800)
    t.add(start + 40)
    t.add(start + 400)
    await until(() => t.handled.length === 3)
    expect(t.handled.map((h) => h.deadline)).toEqual([start + 40, start + 400, start + 800])
    for (const h of t.handled) expect(h.at).toBeGreaterThanOrEqual(h.deadline)
    // each in a sweep of its own: the timer stayed armed for the earliest deadline
    expect(new Set(t.handled.map((h) => h.sweep)).size).toBe(3)
    const sweeps = t.sweeps()
    await sleep(100)
    expect(t.sweeps()).toBe(sweeps) // nothing left: the timer is off
  })

  it("an earlier deadline added while armed for a later one fires at its own time", async () => {
    const t = tracked()
    const start = Date.now()
    t.add(start + 60_000)
    t.add(start + 30)
    await until(() => t.handled.length === 1)
    expect(t.handled.map((h) => h.deadline)).toEqual([start + 30])
    expect(t.pending.has(start + 60_000)).toBe(true)
    t.timer.cancel()
  })

  it("cancel turns it off until the next schedule", async () => {
    const t = tracked()
    const start = Date.now()
    t.add(start + 30)
    t.timer.cancel()
    await sleep(80)
    expect(t.sweeps()).toBe(0)
    t.add(Date.now() + 20)
    await until(() => t.handled.length === 2)
    expect(t.handled).toHaveLength(2)
  })
})
