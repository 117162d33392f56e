/** fauxqs on 127.0.0.1:<argv[2]>, in its own process so a scenario can SIGSTOP it. */
import { buildApp } from "fauxqs"

const port = Number(process.argv[2])
const app = buildApp({ logger: false })
await app.listen({ port, host: "127.0.0.1" })
console.log(`fauxqs listening on 127.0.0.1:${port}`)
