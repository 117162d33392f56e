import { describe, expect, it } from "@effect/vitest"
import { Effect, Exit } from "effect"
import * as Envelope from "../src/Envelope.js"

const valid: Envelope.Envelope = {
  v: 1,
  id: "a1",
  job: "send",
  payload: { userId: "u1", nested: { list: [1, 2, "x"] } },
  attempts: 0,
  maxAttempts: 5,
  enqueuedAt: 1_700_000_000_000,
  priority: 0
}

const reasonOf = (body: string, limit?: number) => {
  const exit = Effect.runSyncExit(Envelope.decode(body, limit))
  if (Exit.isSuccess(exit)) return "ok"
  const error = exit.cause.reasons[0]
  return error && error._tag === "Fail" ? (error.error as { reason: string }).reason : "defect"
}

describe("Envelope", () => {
  it("round-trips an envelope", () => {
    const body = Envelope.encode(valid)
    expect(Effect.runSync(Envelope.decode(body))).toEqual(valid)
  })

  it("rejects a body over the size cap before parsing", () => {
    expect(reasonOf(Envelope.encode(valid), 10)).toBe("TooLarge")
    // multi-byte characters count in bytes, not UTF-16 units
    expect(reasonOf(JSON.stringify({ ...valid, payload: "é".repeat(60) }), 100)).toBe("TooLarge")
  })

  it("rejects what is not JSON or not an object", () => {
    expect(reasonOf("not json")).toBe("NotJson")
    expect(reasonOf("")).toBe("NotJson")
    expect(reasonOf("[1,2]")).toBe("InvalidEnvelope")
    expect(reasonOf("null")).toBe("InvalidEnvelope")
  })

  it("rejects bodies nested too deep, without overflowing the stack", () => {
    const deep = "[".repeat(100_000) + "]".repeat(100_000)
    expect(reasonOf(deep)).toBe("TooDeep")
    const payload = JSON.parse("[".repeat(Envelope.maxDepth + 1) + "]".repeat(Envelope.maxDepth + 1))
    expect(reasonOf(JSON.stringify({ ...valid, payload }))).toBe("TooDeep")
  })

  it("rejects __proto__ and constructor.prototype keys anywhere", () => {
    expect(reasonOf(`{"v":1,"__proto__":{"polluted":true}}`)).toBe("ForbiddenKey")
    expect(reasonOf(JSON.stringify(valid).replace(`"userId"`, `"__proto__":{"x":1},"userId"`))).toBe("ForbiddenKey")
    expect(reasonOf(JSON.stringify({ ...valid, payload: { constructor: { prototype: { x: 1 } } } }))).toBe(
      "ForbiddenKey"
    )
    expect(({} as Record<string, unknown>).polluted).toBeUndefined()
  })

  it("rejects unknown envelope versions and malformed envelopes", () => {
    expect(reasonOf(JSON.stringify({ ...valid, v: 2 }))).toBe("UnknownVersion")
    expect(reasonOf(JSON.stringify({ ...valid, v: undefined }))).toBe("UnknownVersion")
    expect(reasonOf(JSON.stringify({ ...valid, attempts: "zero" }))).toBe("InvalidEnvelope")
    const { job: _job, ...withoutJob } = valid
    expect(reasonOf(JSON.stringify(withoutJob))).toBe("InvalidEnvelope")
  })
})
