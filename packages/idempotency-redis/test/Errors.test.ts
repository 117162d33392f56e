import { describe, expect, it } from "@effect/vitest"
import { Errors } from "@errand/core"
import { toBrokerError } from "../src/internal/errors.js"

describe("error mapping", () => {
  it.each([
    [Object.assign(new Error("connect ECONNREFUSED 127.0.0.1:1"), { code: "ECONNREFUSED" }), "Connection"],
    [new Error("Stream isn't writeable and enableOfflineQueue options is false"), "Connection"],
    [new Error("Command timed out"), "Timeout"],
    [new Error("WRONGPASS invalid username-password pair or user is disabled."), "Unauthorized"],
    [new Error("OOM command not allowed when used memory > 'maxmemory'."), "Throttled"],
    [new Error("ERR wrong number of arguments"), "Unknown"]
  ] as const)("%s → %s", (error, reason) => {
    const mapped = toBrokerError(error, "idempotency.claim", "h:6379")
    expect(mapped).toBeInstanceOf(Errors.BrokerError)
    expect(mapped.reason).toBe(reason)
    expect(mapped.operation).toBe("idempotency.claim")
  })

  it("never shows credentials", () => {
    const mapped = toBrokerError(new Error("cannot reach redis://u:pw123@h:1"), "connect", "h:1")
    expect(mapped.message).not.toContain("pw123")
  })
})
