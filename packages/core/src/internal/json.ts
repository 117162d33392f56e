import { maxDepth } from "../Envelope.js"

/**
 * Why `value` would not survive `JSON.stringify` → `JSON.parse` unchanged, or undefined.
 * JSON.stringify coerces silently (NaN → null, BigInt throws, functions vanish, Dates turn into
 * strings); we refuse instead, so what the handler gets is what the producer gave.
 */
export const checkJsonSafe = (value: unknown): string | undefined => visit(value, "$", 0, new Set())

const visit = (value: unknown, path: string, depth: number, ancestors: Set<object>): string | undefined => {
  switch (typeof value) {
    case "string":
    case "boolean":
      return undefined
    case "number":
      return Number.isFinite(value) ? undefined : `${path} is ${String(value)}, which JSON cannot carry`
    case "bigint":
      return `${path} is a BigInt, which JSON cannot carry`
    case "function":
      return `${path} is a function`
    case "symbol":
      return `${path} is a symbol`
    case "undefined":
      return `${path} is undefined`
  }
  if (value === null) return undefined
  if (depth >= maxDepth) return `${path} is nested deeper than ${maxDepth} levels`
  const object = value as object
  if (ancestors.has(object)) return `${path} is a cycle`
  ancestors.add(object)
  try {
    if (Array.isArray(object)) {
      for (let i = 0; i < object.length; i++) {
        const reason = visit(object[i], `${path}[${i}]`, depth + 1, ancestors)
        if (reason) return reason
      }
      return undefined
    }
    const proto = Object.getPrototypeOf(object)
    if (proto !== Object.prototype && proto !== null) {
      return `${path} is a ${proto?.constructor?.name ?? "non-plain"} object, not plain JSON (encode it in the schema)`
    }
    for (const key of Object.keys(object)) {
      if (key === "__proto__") return `${path} has a "__proto__" key`
      const child = (object as Record<string, unknown>)[key]
      if (child === undefined) continue // dropped by JSON like an absent optional key
      const reason = visit(child, `${path}.${key}`, depth + 1, ancestors)
      if (reason) return reason
    }
    return undefined
  } finally {
    ancestors.delete(object)
  }
}
