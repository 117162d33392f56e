/**
 * Key and id layout. BullMQ keeps a job at `<prefix>:<queue>:<jobId>`, next to its own keys
 * (`wait`, `meta`, `events`…), and refuses integer ids and ids with `:`. Errand ids are free-form,
 * so every job id is stored as `e.<id>` with `%` and `:` percent-encoded: no integer, no colon,
 * and no clash with BullMQ's own key names.
 *
 * @internal
 */

const needsEscape = /[%:]/u

/** Errand id → BullMQ job id. */
export const toJobId = (id: string): string =>
  needsEscape.test(id) ? `e.${id.replace(/%/gu, "%25").replace(/:/gu, "%3A")}` : `e.${id}`

/** BullMQ job id → Errand id (ids not written by us come back unchanged). */
export const fromJobId = (jobId: string): string => {
  if (!jobId.startsWith("e.")) return jobId
  const id = jobId.slice(2)
  return id.includes("%") ? id.replace(/%3A/gu, ":").replace(/%25/gu, "%") : id
}

/** The keys this adapter adds next to BullMQ's for one queue. */
export const queueKeys = (prefix: string, queue: string) => {
  const base = `${prefix}:${queue}`
  return {
    base,
    /** Hash: Errand id → dead-letter entry (JSON). */
    deadLetters: `${base}:errand-dlq`,
    /** Sorted set: Errand id scored by `failedAt`, for oldest-first listing. */
    deadLetterOrder: `${base}:errand-dlq-order`,
    marker: `${base}:marker`,
    job: (id: string) => `${base}:${toJobId(id)}`,
    lock: (id: string) => `${base}:${toJobId(id)}:lock`
  }
}

/**
 * Record a dead letter only while the caller still holds the job's lock, so that a delivery
 * whose lease was lost (and that another worker now runs) cannot put it in the DLQ.
 * KEYS: lock, dlq hash, dlq order. ARGV: token, id, entry JSON, failedAt.
 */
export const deadLetterScript = `
if redis.call("GET", KEYS[1]) ~= ARGV[1] then return 0 end
redis.call("HSET", KEYS[2], ARGV[2], ARGV[3])
redis.call("ZADD", KEYS[3], ARGV[4], ARGV[2])
return 1
`

/**
 * Take back one receive (BullMQ's `attemptsStarted`) of a prefetched job handed back unseen, only
 * while the job still exists, so that a job removed meanwhile is not recreated as a stray key.
 * KEYS: job hash.
 */
export const uncountScript = `
if redis.call("HEXISTS", KEYS[1], "ats") == 1 then return redis.call("HINCRBY", KEYS[1], "ats", -1) end
return 0
`
