import { defineConfig } from "vitest/config"

// Not a project of the root vitest config (which lists packages/* and examples/*): these run only
// through `pnpm test:chaos`.
export default defineConfig({
  resolve: { conditions: ["source"] },
  ssr: { resolve: { conditions: ["source"] } },
  test: {
    include: ["test/**/*.test.ts"],
    testTimeout: 300_000,
    hookTimeout: 60_000,
    fileParallelism: false
  }
})
