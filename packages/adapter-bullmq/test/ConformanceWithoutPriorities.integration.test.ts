import { afterAll } from "@effect/vitest"
import { Effect } from "effect"
import { Conformance } from "@errand/testing"
import { BullMQBroker } from "../src/index.js"
import { deleteKeys, redisUrl, uniquePrefix } from "./helpers.js"

// The second configuration: `priorities: false` (every job on BullMQ's plain wait list). The
// priority cases are skipped with the reason printed; case 20 (broker restart) runs only in the
// default configuration, which shares every code path it exercises but the add script.
const prefix = uniquePrefix()

afterAll(async () => {
  await Effect.runPromise(deleteKeys(prefix))
})

Conformance.run("bullmq, priorities: false", {
  layer: BullMQBroker.layer({ url: redisUrl, prefix, priorities: false }),
  capabilities: BullMQBroker.capabilitiesFor({ priorities: false })
})
