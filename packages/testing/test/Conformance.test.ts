import * as Conformance from "../src/Conformance.js"
import * as MemoryBroker from "../src/MemoryBroker.js"

Conformance.run("memory", {
  layer: MemoryBroker.layer(),
  capabilities: MemoryBroker.capabilities,
  restartSkipReason: "the in-memory broker keeps nothing across restarts (capabilities.persistent is false)"
})
