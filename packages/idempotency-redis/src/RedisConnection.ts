/**
 * Redis connection helpers shared by Errand's Redis packages (this store and
 * `@errand/adapter-bullmq`): option resolution with a `host:port` label that never carries a
 * password, connecting with a bounded wait, closing without hanging, and the one mapping of
 * ioredis failures to `BrokerError`.
 *
 * @since 0.1.0
 */
export {
  close,
  connect,
  type ConnectionInput,
  positive,
  resolve,
  type Resolved,
  retryStrategy
} from "./internal/connection.js"
export { defaultNotFound, reasonOf, sanitize, toBrokerError } from "./internal/errors.js"
