import { fileURLToPath } from "node:url"
import { defineConfig } from "vitest/config"

// Not a project of the root vitest config (which lists packages/* and examples/*): these run only
// through `pnpm test:chaos`, from the repo root (`vitest run --config chaos/vitest.config.ts`) or here.
export default defineConfig({
  root: fileURLToPath(new URL(".", import.meta.url)),
  resolve: { conditions: ["source"] },
  ssr: { resolve: { conditions: ["source"] } },
  test: {
    include: ["test/**/*.test.ts"],
    testTimeout: 300_000,
    hookTimeout: 60_000,
    fileParallelism: false
  }
})
