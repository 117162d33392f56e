/**
 * The conformance suite every broker adapter passes: one call per configuration registers the
 * cases (round trip, bulk, concurrency, retries, dead letters, undecodable messages, delays,
 * ordering, rate limit, graceful shutdown, leases, idempotency, scheduler, stats, payload limits,
 * capabilities, broker restart, bad input) as vitest tests. Cases run in real time against the
 * broker through Errand's public API, each on its own queues, which it deletes afterwards. Cases
 * a broker's capabilities rule out are registered as skipped with the reason, never silently
 * left out.
 *
 * @since 0.1.0
 */
import { describe, it } from "@effect/vitest"
import { Idempotency, Producer } from "@errand/core"
import { Effect, Layer } from "effect"
import { casesA } from "./internal/conformanceCasesA.js"
import { casesB } from "./internal/conformanceCasesB.js"
import type { Case, Kit, SuiteOptions } from "./internal/conformanceKit.js"

/**
 * What a configuration gives the suite.
 *
 * @since 0.1.0
 */
export type Options = SuiteOptions

/**
 * Every case, in order. Titles are `"<id> <title>"`.
 *
 * @since 0.1.0
 */
export const cases: ReadonlyArray<{ readonly id: string; readonly title: string }> = [...casesA, ...casesB].map(
  (c) => ({
    id: c.id,
    title: c.title
  })
)

const defaultTimeout = 60_000

const runCase = (c: Case, options: Options, timeScale: number): Effect.Effect<void, unknown> => {
  const kit: Kit = {
    caseId: c.id,
    options,
    capabilities: options.capabilities,
    timeScale,
    scaled: (ms) => Math.round(ms * timeScale)
  }
  const brokerLayer = c.layer ? c.layer(options) : options.layer
  const storeLayer = c.userStore && options.idempotencyStore ? options.idempotencyStore : Idempotency.layerMemory
  const env = Producer.layer.pipe(Layer.provideMerge(Layer.merge(Layer.fresh(brokerLayer), Layer.fresh(storeLayer))))
  // the case's own scope closes (workers stop, queues are deleted) before the broker layer is released
  return Effect.scoped(c.run(kit)).pipe(Effect.provide(env))
}

/**
 * Register the suite for one broker configuration: one `describe` block, one test per case.
 * Call it at the top level of a test file.
 *
 * @example
 * ```ts
 * import { Conformance } from "@errand/testing"
 * import * as MyBroker from "../src/MyBroker.js"
 *
 * Conformance.run("my-broker", {
 *   layer: MyBroker.layer({ url: "redis://localhost:6379" }),
 *   capabilities: MyBroker.capabilities,
 *   timeScale: 2
 * })
 * ```
 *
 * @since 0.1.0
 */
export const run = (configurationName: string, options: Options): void => {
  const timeScale =
    options.timeScale !== undefined && Number.isFinite(options.timeScale) && options.timeScale > 0
      ? options.timeScale
      : 1
  describe(`Conformance (${configurationName})`, () => {
    for (const c of [...casesA, ...casesB]) {
      const title = `${c.id} ${c.title}`
      const reason = c.skip?.(options)
      if (reason !== undefined) {
        console.info(`[conformance ${configurationName}] skipped: ${title} — ${reason}`)
        it.skip(`${title} — skipped: ${reason}`, () => {})
        continue
      }
      it.live(title, () => runCase(c, options, timeScale), Math.round((c.timeout ?? defaultTimeout) * timeScale))
    }
  })
}
