import { describe, expect, it } from "@effect/vitest"
import { GetQueueUrlCommand, QueueDoesNotExist, SQSClient, SQSServiceException } from "@aws-sdk/client-sqs"
import { Broker } from "@errand/core"
import { mockClient } from "aws-sdk-client-mock"
import { Effect, Layer } from "effect"
import { SqsBroker } from "../src/index.js"
import { sanitize, toBrokerError } from "../src/internal/errors.js"

const secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
const keyId = "AKIAIOSFODNN7EXAMPLE"
const token = "FwoGZXIvYXdzEJr//////////wEaDCn1example+session+token+value+0123456789abcdef"

const serviceError = (name: string, message: string, status = 400, fault: "client" | "server" = "client") =>
  new SQSServiceException({ name, message, $fault: fault, $metadata: { httpStatusCode: status } })

const map = toBrokerError("send", "sqs.eu-west-1.amazonaws.com:443")

describe("error mapping", () => {
  it("classifies SQS and network errors", () => {
    expect(map(serviceError("ThrottlingException", "Rate exceeded")).reason).toBe("Throttled")
    expect(map(serviceError("RequestThrottled", "slow down")).reason).toBe("Throttled")
    expect(map(serviceError("KmsThrottled", "kms")).reason).toBe("Throttled")
    expect(map(serviceError("AccessDenied", "no", 403)).reason).toBe("Unauthorized")
    expect(map(serviceError("InvalidClientTokenId", "bad token", 403)).reason).toBe("Unauthorized")
    expect(map(new QueueDoesNotExist({ message: "The specified queue does not exist.", $metadata: {} })).reason).toBe(
      "NotFound"
    )
    expect(map(serviceError("InternalFailure", "oops", 500, "server")).reason).toBe("Connection")
    expect(map(serviceError("InvalidParameterValue", "Message must be shorter than 262144 bytes.")).reason).toBe(
      "PayloadTooLarge"
    )
    expect(map(serviceError("BatchRequestTooLong", "too long")).reason).toBe("PayloadTooLarge")
    expect(map(Object.assign(new Error("connect ECONNREFUSED 127.0.0.1:4566"), { code: "ECONNREFUSED" })).reason).toBe(
      "Connection"
    )
    expect(map(Object.assign(new Error("socket hang up"), { name: "TimeoutError" })).reason).toBe("Timeout")
    expect(
      map(
        Object.assign(new Error("Could not load credentials from any providers"), { name: "CredentialsProviderError" })
      ).reason
    ).toBe("Unauthorized")
    expect(map(serviceError("Weird", "?")).reason).toBe("Unknown")
    const mapped = map(serviceError("ThrottlingException", "Rate exceeded"))
    expect(mapped.operation).toBe("send")
    expect(mapped.isRetryable).toBe(true)
  })

  it("never shows credentials, tokens, signatures or full URLs", () => {
    const errors = [
      serviceError(
        "SignatureDoesNotMatch",
        `The request signature we calculated does not match. Canonical request: Credential=${keyId}/20260101/us-east-1/sqs/aws4_request, Signature=abcdef0123456789 ${secret}`,
        403
      ),
      serviceError("InvalidClientTokenId", `The security token ${token} included in the request is invalid.`, 403),
      serviceError(
        "AccessDenied",
        `User arn:aws:iam::123:user/x with key ${keyId} is not authorized; secretAccessKey=${secret}`,
        403
      ),
      serviceError(
        "QueueDoesNotExist",
        "The queue https://user:pass@sqs.eu-west-1.amazonaws.com/123456789012/private-queue does not exist"
      ),
      Object.assign(
        new Error(`connect to https://${keyId}:${secret}@example.com:8443/path?X-Amz-Security-Token=${token} failed`),
        {
          code: "ECONNREFUSED"
        }
      )
    ]
    for (const error of errors) {
      const text = `${map(error).message} ${JSON.stringify(map(error))}`
      expect(text).not.toContain(keyId)
      expect(text).not.toContain(secret)
      expect(text).not.toContain(token)
      expect(text).not.toContain("abcdef0123456789")
      expect(text).not.toContain("pass")
      expect(text).not.toContain("/123456789012/")
      expect(text).not.toContain("https://")
    }
    expect(sanitize("see https://h.example:8443/a/b?c=d")).toBe("see h.example:8443")
  })

  it.live("the broker answers a native failure with a BrokerError naming the operation and host:port only", () => {
    const client = new SQSClient({ region: "us-east-1", credentials: { accessKeyId: keyId, secretAccessKey: secret } })
    const mock = mockClient(client)
    mock.on(GetQueueUrlCommand).rejects(serviceError("AccessDenied", `denied for ${keyId}`, 403))
    return Effect.gen(function* () {
      const broker = yield* Broker.Broker
      const error = yield* Effect.flip(broker.stats("jobs"))
      expect(error).toMatchObject({ _tag: "BrokerError", reason: "Unauthorized", operation: "stats" })
      expect(error.message).toContain("sqs.us-east-1.amazonaws.com:443")
      expect(error.message).not.toContain(keyId)
    }).pipe(Effect.provide(Layer.fresh(SqsBroker.layer({ client, region: "us-east-1" }))))
  })

  it.live("a real connection failure (nothing listening) maps to Connection without secrets", () =>
    Effect.gen(function* () {
      const broker = yield* Broker.Broker
      const error = yield* Effect.flip(broker.stats("jobs"))
      expect(error.reason).toBe("Connection")
      expect(error.message).toContain("127.0.0.1:9")
      expect(error.message).not.toContain(secret)
    }).pipe(
      Effect.provide(
        Layer.fresh(
          SqsBroker.layer({
            endpoint: "http://127.0.0.1:9",
            allowInsecureEndpoint: true,
            region: "us-east-1",
            sdkMaxAttempts: 1,
            credentials: { accessKeyId: keyId, secretAccessKey: secret }
          })
        )
      )
    )
  )
})
