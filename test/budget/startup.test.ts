import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { budgetStoreProblem } from "../../src/startup/index.js";
import { makeTestKey } from "../support/auth-keys.js";
import { runServerProcess } from "../support/server-process.js";

// Budgets on Cloud Run need Redis: without it each instance would hold a budget of its own, so start-up
// refuses with one line (src/startup/budget-store.ts, wired in src/main.ts).

const products = {
  "product-a": {
    providers: { echo: { models: ["echo-1"] } },
    budgets: { caller: { daily_tokens: 1000 } },
  },
  "product-b": { providers: { echo: { models: ["echo-1"] } } },
};
const line =
  "budgets are configured (products product-a) but REDIS_URL is not set: on Cloud Run each instance would hold a budget of its own; set REDIS_URL (Memorystore) or remove the budgets";

describe("budgetStoreProblem", () => {
  const map = new Map([
    ["product-a", { name: "product-a", budgets: { caller: { dailyTokens: 1000 } } }],
    ["product-b", { name: "product-b" }],
  ]);
  it.each<[string, boolean, boolean, string | undefined]>([
    ["Cloud Run, no Redis", true, false, line],
    ["Cloud Run with Redis", true, true, undefined],
    ["elsewhere, no Redis (one process: memory is exact)", false, false, undefined],
  ])("%s", (_case, cloudRun, redis, expected) => {
    expect(budgetStoreProblem(map, cloudRun, redis)).toBe(expected);
  });

  it("no budgets: no problem", () => {
    expect(budgetStoreProblem(new Map([["b", { name: "b" }]]), true, false)).toBeUndefined();
  });
});

describe("the process on Cloud Run (K_SERVICE) with budgets and no REDIS_URL", () => {
  let dir: string;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "aks-budget-"));
    await mkdir(join(dir, "config"));
    const key = await makeTestKey("k", "ES256");
    await writeFile(join(dir, "config", "openai_api_keys.json"), JSON.stringify(products));
    await writeFile(join(dir, "config", "jwt_public_keys.json"), JSON.stringify({ keys: [key.publicJwk] }));
  });

  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("refuses to start with one line and exit code 1", async () => {
    const result = await runServerProcess({
      cwd: dir,
      env: { K_SERVICE: "api-key-server" },
      timeoutMs: 30_000,
    });
    expect(result.code).toBe(1);
    expect(result.stderr).toBe(`api-key-server: ${line}\n`);
    expect(result.stdout).not.toContain("Listening on");
  });
});
