import { defineConfig } from "tsup"

export default defineConfig({
  entry: ["src/index.ts", "src/MemoryBrokerEntry.ts"],
  format: ["esm", "cjs"],
  dts: true,
  clean: true,
  sourcemap: true,
  target: "node20",
  external: ["vitest", "@effect/vitest", "effect", "@errand/core"]
})
