/**
 * @errand/testing — the embedded `MemoryBroker` and the `Conformance` suite every adapter passes.
 *
 * `Conformance` imports vitest (an optional peer). Apps that only want the in-memory broker can
 * import `@errand/testing/MemoryBroker`, which does not.
 *
 * @since 0.1.0
 */
export * as Conformance from "./Conformance.js"
export * as MemoryBroker from "./MemoryBroker.js"
