/**
 * The HTTP API, on Node's `http` module (the example does not depend on an HTTP framework).
 *
 * - `POST /api/welcome-email {"userId": "..."}` → 202 with the job id, at once; the email goes out
 *   from the worker. A bad body → 400 with a reason. Enqueue errors map to typed answers:
 *   `PayloadTooLarge` → 413, `InvalidOption` / `EncodeError` → 400, `DuplicateJob` → 409,
 *   `BrokerError` → 503.
 * - `GET /api/stats` → the queue's counts (waiting, active, delayed, dead).
 *
 * @since 0.0.0
 */
import { type Broker, DeadLetters, type Errors, Producer, Queues } from "@errand/core"
import { Effect, FiberSet, Schema, type Scope } from "effect"
import * as http from "node:http"
import type { AddressInfo } from "node:net"
import * as Jobs from "./jobs.js"

/**
 * An HTTP answer: status, JSON body and extra headers.
 *
 * @since 0.0.0
 */
export interface Answer {
  readonly status: number
  readonly body: unknown
  readonly headers?: Readonly<Record<string, string>> | undefined
}

/**
 * Largest request body read, in bytes; more is refused with 413 before parsing.
 *
 * @since 0.0.0
 */
export const maxBodyBytes = 16 * 1024

const WelcomeRequest = Schema.Struct({ userId: Jobs.UserId })
const decodeWelcomeRequest = Schema.decodeUnknownEffect(WelcomeRequest)

const badRequest = (reason: string): Answer => ({ status: 400, body: { error: "BadRequest", reason } })

/** Turn a schema error into one line a client can act on. */
const schemaReason = (message: string): string => message.replace(/\s*\n\s*/g, " ").slice(0, 300)

/**
 * Map an enqueue failure to an HTTP answer. No broker detail beyond its safe message leaves the
 * server.
 *
 * @since 0.0.0
 */
export const enqueueErrorAnswer = (error: Errors.EnqueueError): Answer => {
  switch (error._tag) {
    case "PayloadTooLarge":
      return {
        status: 413,
        body: { error: "PayloadTooLarge", reason: error.message, size: error.size, limit: error.limit }
      }
    case "InvalidOption":
      return { status: 400, body: { error: "InvalidOption", reason: error.message } }
    case "EncodeError":
      return { status: 400, body: { error: "EncodeError", reason: error.message } }
    case "DuplicateJob":
      return {
        status: 409,
        body: { error: "DuplicateJob", reason: `${error.message}: redrive it from the dead-letter queue`, id: error.id }
      }
    case "BrokerError":
      return {
        status: 503,
        body: { error: "BrokerError", reason: `the queue is unavailable (${error.reason}); try again later` },
        headers: { "retry-after": "5" }
      }
    case "InvalidQueueName":
    case "UnsupportedCapability":
      // a deployment mistake, not the client's
      return { status: 500, body: { error: error._tag, reason: error.message } }
  }
}

/**
 * `POST /api/welcome-email`: validate the body and enqueue the welcome email.
 *
 * @since 0.0.0
 */
export const welcomeEmail = Effect.fn("http.welcomeEmail")(function* (rawBody: string) {
  let json: unknown
  try {
    json = JSON.parse(rawBody)
  } catch {
    return badRequest("body is not valid JSON")
  }
  if (typeof json !== "object" || json === null || Array.isArray(json)) {
    return badRequest('body must be a JSON object like {"userId": "..."}')
  }
  if (!("userId" in json)) return badRequest("userId is missing")
  const decoded = yield* Effect.result(decodeWelcomeRequest(json))
  if (decoded._tag === "Failure")
    return badRequest(
      `userId must be a non-empty string of at most 200 characters (${schemaReason(decoded.failure.message)})`
    )
  const { userId } = decoded.success
  return yield* Producer.enqueue(Jobs.SendWelcomeEmail, { userId }, { idempotencyKey: Jobs.welcomeKey(userId) }).pipe(
    Effect.map(
      (result): Answer => ({
        status: 202,
        body: { status: "accepted", id: result.id, duplicate: result.duplicate }
      })
    ),
    Effect.catch((error) => Effect.succeed(enqueueErrorAnswer(error)))
  )
})

/**
 * `GET /api/stats`: the queue's counts, read from the broker.
 *
 * @since 0.0.0
 */
export const stats: Effect.Effect<Answer, never, Broker.Broker> = Effect.gen(function* () {
  const counts = yield* Queues.stats(Jobs.queue)
  const deadLetters = yield* DeadLetters.list(Jobs.queue, { limit: 20 })
  return {
    status: 200,
    body: {
      queue: Jobs.queue,
      ...counts,
      deadLetters: deadLetters.map((d) => ({ id: d.id, job: d.envelope?.job, attempts: d.attempts, error: d.error }))
    }
  } satisfies Answer
}).pipe(
  Effect.catch((error) =>
    Effect.succeed<Answer>(
      error._tag === "BrokerError"
        ? enqueueErrorAnswer(error)
        : { status: 500, body: { error: error._tag, reason: error.message } }
    )
  )
)

/**
 * Route one request.
 *
 * @since 0.0.0
 */
export const route = (
  method: string,
  path: string,
  body: string
): Effect.Effect<Answer, never, Producer.Producer | Broker.Broker> => {
  if (path === "/api/welcome-email") {
    return method === "POST"
      ? welcomeEmail(body)
      : Effect.succeed({
          status: 405,
          body: { error: "MethodNotAllowed", reason: "use POST" },
          headers: { allow: "POST" }
        })
  }
  if (path === "/api/stats") {
    return method === "GET"
      ? stats
      : Effect.succeed({
          status: 405,
          body: { error: "MethodNotAllowed", reason: "use GET" },
          headers: { allow: "GET" }
        })
  }
  return Effect.succeed({ status: 404, body: { error: "NotFound", reason: `no route for ${method} ${path}` } })
}

class BodyTooLarge extends Error {}

const readBody = (request: http.IncomingMessage): Promise<string> =>
  new Promise((resolve, reject) => {
    const chunks: Array<Buffer> = []
    let size = 0
    let tooLarge = false
    request.on("data", (chunk: Buffer) => {
      if (tooLarge) return
      size += chunk.length
      if (size > maxBodyBytes) {
        // answer 413 now; the rest of the body is discarded and the connection closed after the answer
        tooLarge = true
        chunks.length = 0
        reject(new BodyTooLarge())
        return
      }
      chunks.push(chunk)
    })
    request.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")))
    request.on("error", reject)
  })

const write = (response: http.ServerResponse, answer: Answer): void => {
  if (response.headersSent) return
  const body = JSON.stringify(answer.body)
  response.writeHead(answer.status, {
    "content-type": "application/json; charset=utf-8",
    "content-length": Buffer.byteLength(body),
    ...answer.headers
  })
  response.end(body)
}

/**
 * A listening server.
 *
 * @since 0.0.0
 */
export interface Server {
  readonly port: number
  readonly url: string
}

/**
 * Serve the API in the current scope. Closing the scope stops accepting connections, lets the
 * requests in progress finish, and closes idle keep-alive connections.
 *
 * @since 0.0.0
 */
export const serve = (options: {
  readonly port: number
  readonly host?: string | undefined
}): Effect.Effect<Server, Error, Producer.Producer | Broker.Broker | Scope.Scope> =>
  Effect.gen(function* () {
    // Requests run as fibers of this set: they see the app's services, and are interrupted if
    // the scope closes while one is still running.
    const runPromise = yield* FiberSet.makeRuntimePromise<Producer.Producer | Broker.Broker>()
    const host = options.host ?? "127.0.0.1"
    const server = yield* Effect.acquireRelease(
      Effect.callback<http.Server, Error>((resume) => {
        const server = http.createServer((request, response) => {
          const path = (request.url ?? "/").split("?")[0] ?? "/"
          readBody(request)
            .then((body) => runPromise(route(request.method ?? "GET", path, body)))
            .then(
              (answer) => write(response, answer),
              (error: unknown) =>
                write(
                  response,
                  error instanceof BodyTooLarge
                    ? {
                        status: 413,
                        body: { error: "PayloadTooLarge", reason: `body over ${maxBodyBytes} bytes` },
                        headers: { connection: "close" }
                      }
                    : { status: 500, body: { error: "InternalError", reason: "unexpected error" } }
                )
            )
        })
        server.once("error", (error) => resume(Effect.fail(error)))
        server.listen(options.port, host, () => resume(Effect.succeed(server)))
      }),
      (server) =>
        Effect.callback<void>((resume) => {
          server.close(() => resume(Effect.void))
          server.closeIdleConnections()
        })
    )
    const port = (server.address() as AddressInfo).port
    return { port, url: `http://${host}:${port}` }
  })
