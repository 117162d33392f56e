// Checks that every publishable package's built output loads both ways on this Node:
// `require(name)` (CJS) and `import(name)` (ESM), through the package's own `exports` map
// (a package may import itself by name), and that both expose the same names.
import { execFileSync } from "node:child_process"
import { readdirSync, readFileSync, rmSync, writeFileSync, existsSync } from "node:fs"
import { join } from "node:path"

const root = new URL("..", import.meta.url).pathname
let failed = 0
for (const dir of readdirSync(join(root, "packages"))) {
  const pkgDir = join(root, "packages", dir)
  const pkgFile = join(pkgDir, "package.json")
  if (!existsSync(pkgFile)) continue
  const pkg = JSON.parse(readFileSync(pkgFile, "utf8"))
  if (pkg.private) continue
  const probe = join(pkgDir, ".exports-probe.mjs")
  writeFileSync(
    probe,
    `import { createRequire } from "node:module"
const require = createRequire(import.meta.url)
const cjs = require(${JSON.stringify(pkg.name)})
const esm = await import(${JSON.stringify(pkg.name)})
const a = Object.keys(cjs).filter((k) => k !== "default" && k !== "__esModule").sort().join(",")
const b = Object.keys(esm).filter((k) => k !== "default" && k !== "module.exports").sort().join(",")
if (a.length === 0 || a !== b) { console.error("cjs:", a, "\\nesm:", b); process.exit(1) }
console.log(${JSON.stringify(pkg.name)}, "ok: require and import expose", a)
`
  )
  try {
    process.stdout.write(execFileSync(process.execPath, [probe], { cwd: pkgDir, encoding: "utf8" }))
  } catch (error) {
    failed++
    console.error(`${pkg.name}: built output does not load both ways`, error.stderr ?? error.message)
  } finally {
    rmSync(probe, { force: true })
  }
}
if (failed > 0) process.exit(1)
