import { describe, expect, it } from "@effect/vitest"
import * as Topology from "../src/internal/topology.js"

const settings: Topology.TopologySettings = {
  queueType: "classic",
  maxPriority: 9,
  resolution: 100,
  tiers: 6,
  classicQueueVersion: 1
}

// RabbitMQ's topic matching: "*" one word, "#" zero or more words.
const matches = (pattern: ReadonlyArray<string>, key: ReadonlyArray<string>): boolean => {
  if (pattern.length === 0) return key.length === 0
  const [head, ...rest] = pattern
  if (head === "#") return matches(rest, key) || (key.length > 0 && matches(pattern, key.slice(1)))
  if (key.length === 0) return false
  return (head === "*" || head === key[0]) && matches(rest, key.slice(1))
}

// Where a message published to `exchange` with `key` ends up (exchange-to-exchange bindings followed).
const route = (exchange: string, key: string): Array<string> =>
  Topology.bindings("q", settings)
    .filter((b) => b.exchange === exchange && matches(b.pattern.split("."), key.split(".")))
    .flatMap((b) => (b.kind === "queue" ? [b.destination] : route(b.destination, key)))

/** Follow a delayed message through the topology, as the broker would; returns the total wait. */
const simulate = (delay: number): { readonly path: Array<string>; readonly waited: number } => {
  const key = Topology.delayRoutingKey(settings, delay)!
  const path: Array<string> = []
  let waited = 0
  let targets = route(Topology.delayExchange("q", settings), key)
  for (let hop = 0; hop < 20; hop++) {
    expect(targets).toHaveLength(1) // exactly one route at every step: never dropped, never copied
    const target = targets[0]!
    path.push(target)
    if (target === "q") return { path, waited }
    const tier = [...Array(settings.tiers).keys()].find((t) => Topology.waitQueue("q", settings, t) === target)!
    waited += Topology.tierTtl(settings, tier)
    // the tier dead-letters with its own arguments
    const args = Topology.waitQueueOptions("q", settings, tier).arguments!
    targets =
      args["x-dead-letter-exchange"] === ""
        ? [args["x-dead-letter-routing-key"] as string]
        : route(args["x-dead-letter-exchange"] as string, key)
  }
  throw new Error("no route to the work queue")
}

describe("wait tiers", () => {
  it("every delay up to the maximum reaches the work queue after exactly its rounded-up delay", () => {
    expect(Topology.maxDelay(settings)).toBe(6300)
    for (let delay = 1; delay <= Topology.maxDelay(settings); delay += 37) {
      const { path, waited } = simulate(delay)
      expect(waited).toBe(Math.ceil(delay / 100) * 100)
      expect(waited).toBeGreaterThanOrEqual(delay)
      expect(path.at(-1)).toBe("q")
    }
  })

  it("visits the tiers of the set bits, highest first", () => {
    expect(Topology.tiersFor(settings, 1300)).toEqual([3, 2, 0])
    expect(simulate(1300).path).toEqual(["q~wait~800", "q~wait~400", "q~wait~100", "q"])
    expect(simulate(100).path).toEqual(["q~wait~100", "q"])
    expect(simulate(6300).path).toHaveLength(7)
  })

  it("a zero delay uses no tier; a delay beyond the maximum is capped", () => {
    expect(Topology.delayRoutingKey(settings, 0)).toBeUndefined()
    expect(Topology.delayRoutingKey(settings, 10_000_000)).toBe("1.1.1.1.1.1")
  })

  it("declares priorities only on classic work queues, TTL and dead-lettering on tiers", () => {
    expect(Topology.workQueueOptions(settings).arguments).toEqual({ "x-max-priority": 9 })
    expect(Topology.workQueueOptions({ ...settings, queueType: "quorum" }).arguments).toEqual({
      "x-queue-type": "quorum"
    })
    expect(Topology.waitQueueOptions("q", settings, 2).arguments).toEqual({
      "x-message-ttl": 400,
      "x-dead-letter-exchange": "q~route~200"
    })
    expect(Topology.waitQueueOptions("q", settings, 0).arguments).toEqual({
      "x-message-ttl": 100,
      "x-dead-letter-exchange": "",
      "x-dead-letter-routing-key": "q"
    })
    expect(Topology.bindings("q", settings)).toHaveLength(2 * settings.tiers)
    expect(Topology.waitQueueOptions("q", { ...settings, queueType: "quorum" }, 0).arguments).not.toHaveProperty(
      "x-queue-version"
    )
    expect(Topology.waitQueueOptions("q", { ...settings, queueType: "quorum" }, 0).arguments).toMatchObject({
      "x-queue-type": "quorum",
      "x-dead-letter-strategy": "at-least-once",
      "x-overflow": "reject-publish"
    })
  })

  it("declares the classic storage version on every classic queue, and can declare it away", () => {
    const v2 = { ...settings, classicQueueVersion: 2 } as const
    const declarations = Topology.queueDeclarations("q", v2)
    expect(declarations.map(([name]) => name)).toEqual([
      "q",
      "q~dlq",
      ...Array.from({ length: settings.tiers }, (_, tier) => Topology.waitQueue("q", settings, tier))
    ])
    for (const [, options] of declarations) expect(options.arguments).toMatchObject({ "x-queue-version": 2 })
    expect(Topology.workQueueOptions(v2).arguments).toEqual({ "x-queue-version": 2, "x-max-priority": 9 })
    expect(Topology.withoutQueueVersion(Topology.workQueueOptions(v2))).toEqual({
      durable: true,
      arguments: { "x-max-priority": 9 }
    })
    for (const [, options] of Topology.queueDeclarations("q", settings))
      expect(options.arguments).not.toHaveProperty("x-queue-version")
    for (const [, options] of Topology.queueDeclarations("q", { ...v2, queueType: "quorum" }))
      expect(options.arguments).not.toHaveProperty("x-queue-version")
  })

  it("recognises RabbitMQ's refusal of version 2 for a queue without one, and only that", () => {
    const refusal = (queue: string, received: string, current: string) =>
      new Error(
        `Operation failed: QueueDeclare; 406 (PRECONDITION-FAILED) with message "PRECONDITION_FAILED - inequivalent arg 'x-queue-version' for queue '${queue}' in vhost '/': received ${received} but current is ${current}"`
      )
    expect(Topology.unversionedQueueIn(refusal("q~wait~100", "the value '2' of type 'byte'", "none"))).toBe(
      "q~wait~100"
    )
    expect(Topology.unversionedQueueIn(refusal("it's", "the value '2' of type 'byte'", "none"))).toBe("it's")
    // the opposite mismatches: a version-2 queue declared without a version, or with version 1
    expect(Topology.unversionedQueueIn(refusal("q", "none", "the value '2' of type 'byte'"))).toBeUndefined()
    expect(Topology.unversionedQueueIn(refusal("q", "'1'", "'2'"))).toBeUndefined()
    expect(
      Topology.unversionedQueueIn(
        new Error("PRECONDITION_FAILED - inequivalent arg 'x-max-priority' for queue 'q' in vhost '/'")
      )
    ).toBeUndefined()
    expect(Topology.unversionedQueueIn(undefined)).toBeUndefined()
    expect(Topology.unversionedQueueIn("x-queue-version")).toBeUndefined()
  })
})
