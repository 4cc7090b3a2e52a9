import { mkdir, mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { promtoolCheck, scrape, series } from "../support/metrics-scrape.js";
import { repoRoot, startServerProcess } from "../support/server-process.js";

/**
 * The real process (src/main.ts) with and without API_KEY_SERVER_METRICS_PORT: the "how it is
 * shown" — `curl localhost:$API_KEY_SERVER_METRICS_PORT/metrics` — and nothing at all when it is unset.
 */

const { version } = JSON.parse(await readFile(join(repoRoot, "package.json"), "utf8")) as { version: string };
const dirs: string[] = [];

/** A working directory with an empty `config/`: the server then serves its embedded default product. */
async function workDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "aks-metrics-"));
  await mkdir(join(dir, "config"));
  dirs.push(dir);
  return dir;
}

afterAll(async () => {
  await Promise.all(dirs.map((dir) => rm(dir, { recursive: true, force: true })));
});

describe("the metrics port of the real process", () => {
  it("set: metrics on their own port (logged), not on the public one; closed on SIGTERM", async () => {
    const server = await startServerProcess({
      cwd: await workDir(),
      env: { API_KEY_SERVER_METRICS_PORT: "0" },
      waitForSecrets: true,
    });
    try {
      const line = JSON.parse(await server.waitForLine((l) => l.includes("Metrics on"))) as {
        metricsPort: number;
        message: string;
      };
      const url = `http://127.0.0.1:${line.metricsPort}/metrics`;
      expect(line.message).toBe(`Metrics on http://127.0.0.1:${line.metricsPort}/metrics`);
      const text = await scrape(url);
      expect(series(text, "api_key_server_build_info")).toEqual([
        `{node_version=${process.version},version=${version}} 1`,
      ]);
      // The start-up load of the three secrets: products from the embedded default, JWT and HMAC missing.
      expect(series(text, "api_key_server_secret_loads_total", { phase: "start" })).toEqual([
        "{result=missing,secret=hmac-secrets} 1",
        "{result=missing,secret=jwt-public-keys} 1",
        "{result=ok,secret=openai-api-keys} 1",
      ]);
      expect(series(text, "api_key_server_rate_limiter_source", { source: "memory" })).toEqual(["{} 1"]);
      expect(await promtoolCheck(text)).toEqual({ code: 0, output: "" });

      const publicPort = await fetch(`${server.url}/metrics`);
      expect(publicPort.status).toBe(404);
      expect(await publicPort.text()).not.toContain("api_key_server_");

      server.kill("SIGTERM");
      expect(await server.exited).toEqual({ code: 0, signal: null });
      await expect(fetch(url)).rejects.toThrow();
    } finally {
      server.kill("SIGKILL");
    }
  });

  it("unset: no metrics listener and no metrics line", async () => {
    const server = await startServerProcess({ cwd: await workDir(), waitForSecrets: true });
    try {
      expect(server.lines.some((l) => l.includes("Metrics on") || l.includes("metricsPort"))).toBe(false);
      expect((await fetch(`${server.url}/metrics`)).status).toBe(404);
    } finally {
      server.kill("SIGTERM");
      await server.exited;
    }
  });
});
