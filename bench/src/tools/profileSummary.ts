/**
 * Summarise a V8 `.cpuprofile` (from `node --cpu-prof`): self time by function and by source
 * area (core, adapters, effect, clients, node). For finding where the bench's time goes.
 *
 *   node --import tsx bench/src/tools/profileSummary.ts <file.cpuprofile> [top=30]
 */
import { readFileSync } from "node:fs"

interface Node {
  readonly id: number
  readonly callFrame: { readonly functionName: string; readonly url: string; readonly lineNumber: number }
  readonly children?: ReadonlyArray<number>
}
interface Profile {
  readonly nodes: ReadonlyArray<Node>
  readonly samples: ReadonlyArray<number>
  readonly timeDeltas: ReadonlyArray<number>
}

const [file, topArg] = process.argv.slice(2)
if (file === undefined) {
  console.error("usage: profileSummary <file.cpuprofile> [top]")
  process.exit(1)
}
const top = Number(topArg ?? 30)
const profile = JSON.parse(readFileSync(file, "utf8")) as Profile
const byId = new Map(profile.nodes.map((n) => [n.id, n]))
const self = new Map<number, number>()
profile.samples.forEach((id, i) => self.set(id, (self.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0)))
const total = [...self.values()].reduce((a, b) => a + b, 0)

const area = (url: string): string => {
  if (url === "") return "(native/gc/idle)"
  const m = /packages\/([^/]+)\/src\/(.*)$/u.exec(url)
  if (m) return `@errand/${m[1]}/${m[2]}`
  const e = /node_modules\/(?:\.pnpm\/[^/]+\/node_modules\/)?((?:@[^/]+\/)?[^/]+)\/(.*)$/u.exec(url)
  if (e) return e[1] === "effect" ? `effect/${e[2]!.replace(/^dist\/|^src\//u, "")}` : e[1]!
  if (url.startsWith("node:")) return url
  if (url.includes("/bench/")) return `bench/${url.split("/bench/")[1]}`
  return url
}

const byFunction = new Map<string, number>()
const byArea = new Map<string, number>()
for (const [id, time] of self) {
  const node = byId.get(id)!
  const where = area(node.callFrame.url)
  const key = `${node.callFrame.functionName || "(anonymous)"} ${where}:${node.callFrame.lineNumber + 1}`
  byFunction.set(key, (byFunction.get(key) ?? 0) + time)
  const group = where.startsWith("@errand/") ? where : where.split("/")[0]!
  byArea.set(group, (byArea.get(group) ?? 0) + time)
}
const show = (title: string, map: Map<string, number>) => {
  console.log(`\n${title}`)
  for (const [key, time] of [...map].sort((a, b) => b[1] - a[1]).slice(0, top)) {
    console.log(`${((100 * time) / total).toFixed(1).padStart(5)}%  ${(time / 1000).toFixed(0).padStart(7)} ms  ${key}`)
  }
}
console.log(`total sampled: ${(total / 1000).toFixed(0)} ms`)
show("self time by area", byArea)
show("self time by function", byFunction)
