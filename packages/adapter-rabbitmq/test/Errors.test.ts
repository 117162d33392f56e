import { Errors } from "@errand/core"
import { describe, expect, it } from "@effect/vitest"
import { AdapterFailure, endpointOf, scrub, toBrokerError } from "../src/internal/errors.js"

const map = (cause: unknown) => toBrokerError("send", "broker.example:5672")(cause)

describe("error mapping", () => {
  it("shows host:port only", () => {
    expect(endpointOf("amqp://user:s3cret@broker.example:5673/vhost?heartbeat=5")).toBe("broker.example:5673")
    expect(endpointOf("amqps://user:s3cret@broker.example")).toBe("broker.example:5671")
    expect(endpointOf("amqp://broker.example")).toBe("broker.example:5672")
    expect(endpointOf("not a url")).toBe("<invalid AMQP URL>")
    expect(endpointOf({ hostname: "h", port: 1234 })).toBe("h:1234")
    expect(endpointOf({ hostname: "h", protocol: "amqps" })).toBe("h:5671")
  })

  it("scrubs URLs and credentials out of native messages", () => {
    const error = map(new Error("connect failed for amqp://user:s3cret@host:5672/ and user:s3cret@host"))
    expect(error.message).not.toContain("s3cret")
    expect(scrub("x amqps://a:b@c y")).toBe("x <url> y")
  })

  it("maps socket failures to Connection (retryable)", () => {
    const refused = Object.assign(new Error("connect ECONNREFUSED 127.0.0.1:5672"), { code: "ECONNREFUSED" })
    const error = map(refused)
    expect(error).toBeInstanceOf(Errors.BrokerError)
    expect(error.reason).toBe("Connection")
    expect(error.isRetryable).toBe(true)
    expect(error.operation).toBe("send")
    expect(error.message).toContain("broker.example:5672")
    expect(map(new Error("Channel closed")).reason).toBe("Connection")
    expect(map(new Error("Heartbeat timeout")).reason).toBe("Connection")
    expect(map(Object.assign(new Error("x"), { name: "IllegalOperationError" })).reason).toBe("Connection")
    expect(
      map(new Error('Connection closed: 320 (CONNECTION-FORCED) with message "closed via management plugin"')).reason
    ).toBe("Connection")
  })

  it("maps a refused login to Unauthorized without the broker's text", () => {
    const error = map(
      new Error(
        'Handshake terminated by server: 403 (ACCESS-REFUSED) with message "ACCESS_REFUSED - Login was refused"'
      )
    )
    expect(error.reason).toBe("Unauthorized")
    expect(error.isRetryable).toBe(false)
  })

  it("maps channel errors by AMQP code", () => {
    expect(
      map(new Error("Operation failed: QueueDeclare; 404 (NOT-FOUND) with message \"NOT_FOUND - no queue 'x'\"")).reason
    ).toBe("NotFound")
    expect(
      map(
        new Error(
          'Channel closed by server: 406 (PRECONDITION-FAILED) with message "PRECONDITION_FAILED - inequivalent arg"'
        )
      ).reason
    ).toBe("Unknown")
    expect(map(new Error("PRECONDITION_FAILED - message size 200 is larger than configured max size 100")).reason).toBe(
      "PayloadTooLarge"
    )
  })

  it("keeps the adapter's own reasons and BrokerErrors as they are", () => {
    expect(map(new AdapterFailure("Unroutable", "returned")).reason).toBe("Unroutable")
    expect(map(new AdapterFailure("Timeout", "no confirm")).reason).toBe("Timeout")
    const original = new Errors.BrokerError({ reason: "Throttled", operation: "take", message: "m" })
    expect(map(original)).toBe(original)
    expect(map("weird").reason).toBe("Unknown")
  })
})
