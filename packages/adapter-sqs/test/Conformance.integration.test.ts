/**
 * The shared conformance suite against SQS (the fauxqs emulator unless `SQS_ENDPOINT` is set),
 * for standard and FIFO queues.
 */
import { Conformance } from "@errand/testing"
import { Effect, Layer } from "effect"
import { afterAll, beforeAll } from "vitest"
import { SqsBroker } from "../src/index.js"
import * as Fauxqs from "./fauxqs.js"

let emulator: Fauxqs.Emulator | undefined
beforeAll(async () => {
  emulator = await Fauxqs.start()
})
afterAll(async () => {
  await emulator?.stop()
})

// the layer is built per case, after beforeAll has started the emulator
const layerFor = (fifo: boolean) =>
  Layer.unwrap(Effect.sync(() => SqsBroker.layer({ ...Fauxqs.clientOptions(emulator!.endpoint), fifo })))

const restartSkipReason =
  "SQS is persistent, but the fauxqs emulator keeps everything in memory and cannot restart; no restart command for this configuration"

Conformance.run("sqs-standard", {
  layer: layerFor(false),
  capabilities: SqsBroker.capabilities({ fifo: false }),
  restartSkipReason,
  timeScale: 2
})

Conformance.run("sqs-fifo", {
  layer: layerFor(true),
  capabilities: SqsBroker.capabilities({ fifo: true }),
  restartSkipReason,
  timeScale: 2
})
