/**
 * A fake mailer: it records every call and every email "sent", and fails on a deterministic
 * plan so that retries and the dead-letter queue can be shown and checked.
 *
 * @since 0.0.0
 */
import { Clock, Context, Duration, Effect, Layer, Schema } from "effect"

/**
 * The templates the service sends.
 *
 * @since 0.0.0
 */
export type Template = "welcome" | "reminder" | "digest"

/**
 * An email to send.
 *
 * @since 0.0.0
 */
export interface Email {
  /** The recipient (the fake has no address book: a user id, or a team name). */
  readonly to: string
  readonly template: Template
  readonly subject: string
  readonly text: string
}

/**
 * An email the mailer accepted, with when.
 *
 * @since 0.0.0
 */
export interface SentEmail extends Email {
  readonly sentAt: number
}

/**
 * One call to `send`, failed or not.
 *
 * @since 0.0.0
 */
export interface Call {
  readonly to: string
  readonly template: Template
  readonly at: number
  readonly ok: boolean
}

/**
 * The mail provider refused or timed out. Transient: the worker retries it.
 *
 * @since 0.0.0
 */
export class MailerError extends Schema.TaggedError<MailerError>()("MailerError", {
  to: Schema.String,
  message: Schema.String
}) {}

/**
 * When the fake fails.
 *
 * @since 0.0.0
 */
export interface Options {
  /** Welcome emails to these users fail this many times, then succeed. */
  readonly failFirst?: Readonly<Record<string, number>> | undefined
  /** Welcome emails to these users always fail (their job ends in the DLQ). */
  readonly alwaysFail?: ReadonlyArray<string> | undefined
  /**
   * Any send fails with this probability (0..1), drawn from a PRNG seeded with `seed`, so a run
   * is repeatable. Default 0.
   */
  readonly failureRate?: number | undefined
  readonly seed?: number | undefined
  /** How long each send takes (a real provider is not instant). Default 0. */
  readonly latency?: Duration.Input | undefined
  /** Log every send. Default false. */
  readonly log?: boolean | undefined
}

/** mulberry32: a small seeded PRNG; the same seed gives the same sequence. */
const prng = (seed: number): (() => number) => {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

/**
 * The mailer service.
 *
 * @since 0.0.0
 */
export class Mailer extends Context.Service<
  Mailer,
  {
    /** Send one email. Fails with `MailerError` when the provider refuses it. */
    readonly send: (email: Email) => Effect.Effect<SentEmail, MailerError>
    /** Emails sent so far, oldest first. */
    readonly sent: Effect.Effect<ReadonlyArray<SentEmail>>
    /** Every call to `send`, failed ones included, oldest first. */
    readonly calls: Effect.Effect<ReadonlyArray<Call>>
  }
>()("@errand/example-welcome-email/Mailer") {
  /** A fake mailer with its failure plan. */
  static readonly layer = (options?: Options): Layer.Layer<Mailer> => Layer.effect(Mailer, make(options))
}

/**
 * Build a fake mailer.
 *
 * @since 0.0.0
 */
export const make = (options?: Options): Effect.Effect<Mailer["Service"]> =>
  Effect.sync(() => {
    const sent: Array<SentEmail> = []
    const calls: Array<Call> = []
    const welcomeCalls = new Map<string, number>()
    const alwaysFail = new Set(options?.alwaysFail ?? [])
    const failureRate = options?.failureRate ?? 0
    const random = prng(options?.seed ?? 1)
    const latency = Duration.fromInputUnsafe(options?.latency ?? 0)

    const failureFor = (email: Email): string | undefined => {
      if (email.template === "welcome") {
        const n = (welcomeCalls.get(email.to) ?? 0) + 1
        welcomeCalls.set(email.to, n)
        if (alwaysFail.has(email.to)) return "mailbox unavailable (550)"
        if (n <= (options?.failFirst?.[email.to] ?? 0)) return "provider timeout (try again)"
      }
      if (failureRate > 0 && random() < failureRate) return "provider rate limit (429)"
      return undefined
    }

    const send = Effect.fn("Mailer.send")(function* (email: Email) {
      if (Duration.isGreaterThan(latency, Duration.zero)) yield* Effect.sleep(latency)
      const at = yield* Clock.currentTimeMillis
      const failure = failureFor(email)
      calls.push({ to: email.to, template: email.template, at, ok: failure === undefined })
      if (failure !== undefined) {
        const error = new MailerError({ to: email.to, message: `${email.template} email to ${email.to}: ${failure}` })
        if (options?.log) yield* Effect.logWarning(`mailer: ${error.message}`)
        return yield* error
      }
      const record: SentEmail = { ...email, sentAt: at }
      sent.push(record)
      if (options?.log) yield* Effect.logInfo(`mailer: sent ${email.template} email to ${email.to}: "${email.subject}"`)
      return record
    })

    return Mailer.of({
      send,
      sent: Effect.sync(() => sent.slice()),
      calls: Effect.sync(() => calls.slice())
    })
  })
