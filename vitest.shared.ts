import { defineConfig } from "vitest/config"

/** Shared vitest settings: resolve workspace packages to their sources (`source` export condition). */
export const shared = defineConfig({
  resolve: { conditions: ["source"] },
  ssr: { resolve: { conditions: ["source"] } },
  test: {
    testTimeout: 60_000,
    hookTimeout: 60_000
  }
})
