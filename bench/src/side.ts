/**
 * One side of a comparison: the same workload written through Errand or through the raw client.
 * Every method runs against a fresh queue it is given and returns what it measured; the caller
 * deletes the queue afterwards with `cleanup`.
 */
export interface Side {
  /** Declare or create the queue, untimed, as an application does at startup. */
  readonly prepare: (queue: string) => Promise<void>
  /** `n` single enqueues, one after the other. Returns elapsed ms. */
  readonly enqueueSequential: (queue: string, n: number) => Promise<number>
  /** `n` single enqueues all started at once (many callers, as under HTTP load). Returns elapsed ms. */
  readonly enqueueConcurrent: (queue: string, n: number) => Promise<number>
  /** `n` jobs in one bulk call. Returns elapsed ms. */
  readonly enqueueBulk: (queue: string, n: number) => Promise<number>
  /** Put `n` jobs on the queue, untimed (setup for `work`). */
  readonly fill: (queue: string, n: number) => Promise<void>
  /** Start a worker at `concurrency` on a queue holding `n` jobs; ms until all ran. */
  readonly work: (queue: string, n: number, concurrency: number) => Promise<number>
  /** Worker at `concurrency` and a producer sending `n` jobs in bulk chunks of `chunk`, together; ms until all ran. */
  readonly endToEnd: (queue: string, n: number, concurrency: number, chunk: number) => Promise<number>
  /** Enqueue `n` single jobs at `perSecond` with a worker running; enqueue-to-handler-start latencies in ms. */
  readonly latency: (queue: string, n: number, perSecond: number, concurrency: number) => Promise<Array<number>>
  /** Delete the queue and everything kept for it. */
  readonly cleanup: (queue: string) => Promise<void>
  /** Close connections. */
  readonly close: () => Promise<void>
}

/** Time limits for one scenario run, in ms. */
export interface Limits {
  readonly timeout: number
}
