import { describe, expect, it } from "@effect/vitest"
import { Errors } from "@errand/core"
import { reasonOf, sanitize, toBrokerError } from "../src/internal/errors.js"

const withCode = (message: string, code: string) => Object.assign(new Error(message), { code })
const named = (message: string, name: string) => Object.assign(new Error(message), { name })

describe("error mapping", () => {
  it.each([
    [withCode("connect ECONNREFUSED 127.0.0.1:6390", "ECONNREFUSED"), "Connection"],
    [withCode("read ECONNRESET", "ECONNRESET"), "Connection"],
    [withCode("getaddrinfo ENOTFOUND redis.internal", "ENOTFOUND"), "Connection"],
    [new Error("Stream isn't writeable and enableOfflineQueue options is false"), "Connection"],
    [new Error("Connection is closed."), "Connection"],
    [named("Reached the max retries per request limit (which is 0).", "MaxRetriesPerRequestError"), "Connection"],
    [new Error("LOADING Redis is loading the dataset in memory"), "Connection"],
    [new Error("READONLY You can't write against a read only replica."), "Connection"],
    [new Error("CLUSTERDOWN The cluster is down"), "Connection"],
    [new Error("Command timed out"), "Timeout"],
    [withCode("connect ETIMEDOUT", "ETIMEDOUT"), "Timeout"],
    [new Error("NOAUTH Authentication required."), "Unauthorized"],
    [new Error("WRONGPASS invalid username-password pair or user is disabled."), "Unauthorized"],
    [new Error("NOPERM this user has no permissions to run the 'eval' command"), "Unauthorized"],
    [new Error("OOM command not allowed when used memory > 'maxmemory'."), "Throttled"],
    [new Error("Missing lock for job e.x. moveToFinished"), "NotFound"],
    [new Error("Missing key for job e.x. moveToDelayed"), "NotFound"],
    [new Error("Lock mismatch for job e.x. Cmd moveToFinished from active"), "NotFound"],
    [new Error("Job e.x is not in the active state. moveToDelayed"), "NotFound"],
    [new Error("ERR Protocol error: invalid bulk length"), "PayloadTooLarge"],
    [new Error("ERR unknown command 'FOO'"), "Unknown"],
    ["a string", "Unknown"],
    [undefined, "Unknown"]
  ] as const)("%s → %s", (error, reason) => {
    expect(reasonOf(error)).toBe(reason)
    const mapped = toBrokerError(error, "send", "127.0.0.1:6379")
    expect(mapped).toBeInstanceOf(Errors.BrokerError)
    expect(mapped.reason).toBe(reason)
    expect(mapped.operation).toBe("send")
    expect(mapped.message).toContain("127.0.0.1:6379")
  })

  it("retryable reasons are the connection family", () => {
    expect(toBrokerError(new Error("Command timed out"), "take", "h:1").isRetryable).toBe(true)
    expect(toBrokerError(new Error("NOAUTH Authentication required."), "take", "h:1").isRetryable).toBe(false)
  })

  it("keeps a BrokerError as it is", () => {
    const error = new Errors.BrokerError({ reason: "Throttled", operation: "x", message: "m" })
    expect(toBrokerError(error, "send", "h:1")).toBe(error)
  })

  it("never shows a password or a URL", () => {
    const error = new Error("failed to reach redis://admin:s3cret@db.example:6379/0 and rediss://:hunter2@x:1")
    const mapped = toBrokerError(error, "connect", "db.example:6379")
    expect(mapped.message).not.toContain("s3cret")
    expect(mapped.message).not.toContain("hunter2")
    expect(mapped.message).not.toContain("redis://")
    expect(mapped.message).toContain("db.example:6379")
    expect(sanitize("see //user:pw@host")).toBe("see //<redacted>@host")
  })

  it("bounds the message length", () => {
    expect(toBrokerError(new Error("x".repeat(10_000)), "send", "h:1").message.length).toBeLessThan(700)
  })
})
