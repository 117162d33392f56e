import { describe, expect, it } from "@effect/vitest"
import { fromJobId, queueKeys, toJobId } from "../src/internal/keys.js"

describe("job ids", () => {
  it.each(["abc", "123", "a:b", "a%3Ab", "%", "::", "meta", "wait", "e.x", "ключ", "a b", ""])(
    "%j is stored as a BullMQ-safe id and read back unchanged",
    (id) => {
      const jobId = toJobId(id)
      expect(jobId.includes(":")).toBe(false)
      expect(`${Number.parseInt(jobId, 10)}` === jobId).toBe(false)
      expect(jobId.startsWith("e.")).toBe(true)
      expect(fromJobId(jobId)).toBe(id)
    }
  )

  it("distinct ids stay distinct", () => {
    const ids = ["a:b", "a%3Ab", "a%253Ab", "a%b", "a%25b"]
    expect(new Set(ids.map(toJobId)).size).toBe(ids.length)
  })

  it("ids not written by the adapter come back as they are", () => {
    expect(fromJobId("42")).toBe("42")
  })

  it("every key of a queue starts with <prefix>:<queue>: (one Cluster slot under a hash tag)", () => {
    const keys = queueKeys("{errand}", "emails")
    for (const key of [keys.deadLetters, keys.deadLetterOrder, keys.marker, keys.job("a:b"), keys.lock("x")]) {
      expect(key.startsWith("{errand}:emails:")).toBe(true)
    }
    expect(keys.job("a:b")).toBe("{errand}:emails:e.a%3Ab")
    expect(keys.lock("x")).toBe("{errand}:emails:e.x:lock")
  })
})
