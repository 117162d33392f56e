import { defineProject, mergeConfig } from "vitest/config"
import { shared } from "../../vitest.shared.js"

// Every file here talks to the one local RabbitMQ, and the restart cases stop it: run files one
// at a time so a restart never disturbs another file's tests.
export default mergeConfig(shared, defineProject({ test: { name: "adapter-rabbitmq", fileParallelism: false } }))
