import { describe, expect, it } from "@effect/vitest"
import * as QueueName from "../src/QueueName.js"

describe("QueueName", () => {
  it("accepts ordinary names", () => {
    for (const name of ["emails", "emails-high", "a.b_c-1", "orders.fifo", "x".repeat(80)]) {
      expect(QueueName.check(name)).toBeUndefined()
    }
  })

  it("refuses empty, long, reserved and special-character names with a reason", () => {
    const bad = ["", "x".repeat(81), "a:b", "{q}", "a}", "a*", "a?", "a[b]", "a b", "a\tb", "amq.direct", "é", "a/b"]
    for (const name of bad) expect(QueueName.check(name), name).toBeTypeOf("string")
  })

  it("accepts a prefix wrapped in one hash tag, and only one", () => {
    expect(QueueName.checkPrefix("{errand}")).toBeUndefined()
    expect(QueueName.checkPrefix("errand")).toBeUndefined()
    expect(QueueName.checkPrefix("{{errand}}")).toBeTypeOf("string")
    expect(QueueName.checkPrefix("{err}and")).toBeTypeOf("string")
    expect(QueueName.checkPrefix("{}")).toBeTypeOf("string")
  })
})
