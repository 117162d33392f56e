import { defineConfig } from "tsup"

// The demo and the server run from a bundle (no TypeScript runner is installed). `@errand/testing`
// is bundled from its sources (tree-shaken to MemoryBroker, so its vitest-based conformance suite
// is never loaded); `@errand/core` and `effect` stay external so the adapters, loaded at runtime,
// share one copy of core with the app.
export default defineConfig({
  entry: ["src/main.ts", "src/demo.ts"],
  format: ["esm"],
  platform: "node",
  target: "node20",
  clean: true,
  sourcemap: true,
  dts: false,
  noExternal: ["@errand/testing"],
  external: ["@errand/core", "effect", "vitest", "@effect/vitest"],
  esbuildOptions(options) {
    options.conditions = ["source"]
  }
})
