/**
 * The `@errand/testing/MemoryBroker` entry point: the in-memory broker without the conformance
 * suite (and so without vitest).
 *
 * @since 0.1.0
 */
export * from "./MemoryBroker.js"
