export * as MemoryBroker from "./MemoryBroker.js"
