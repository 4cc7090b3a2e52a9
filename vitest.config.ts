import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    // bench/test: the benchmark's own pieces (bench/README.md); type-checked by bench/tsconfig.json.
    include: ["test/**/*.test.ts", "bench/test/**/*.test.ts"],
    testTimeout: 20_000,
    hookTimeout: 30_000,
    pool: "forks",
    // Starts a throw-away redis-server for the run unless API_KEY_SERVER_TEST_REDIS_URL names one.
    globalSetup: ["test/support/redis-global-setup.ts"],
  },
});
