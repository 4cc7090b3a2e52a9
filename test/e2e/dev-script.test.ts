import { utimes } from "node:fs/promises";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freePort, freshClone, startBash, type FreshClone } from "../support/fresh-clone.js";

// `npm run dev` (README, Development): the server straight from src/ (Node 24 strips the types; gen/'s
// enums need --experimental-transform-types), restarted by `node --watch` when a source file changes. Run
// in a fresh copy of the repository, so touching a source file there disturbs nothing else.

const listening = (text: string): number => text.match(/"message":"Listening on /g)?.length ?? 0;

describe("npm run dev", () => {
  let clone: FreshClone;
  beforeAll(async () => {
    clone = await freshClone();
  });
  afterAll(async () => {
    await clone?.remove();
  });

  it("serves from the sources with no build, restarts on a changed source file, and stops with npm", async () => {
    const port = await freePort();
    const dev = startBash("npm run dev", { cwd: clone.dir, env: { PORT: String(port) } });
    const output = () => `${dev.stdout()}\n--- stderr ---\n${dev.stderr()}`;
    const waitFor = async (what: string, check: () => boolean, timeoutMs: number): Promise<void> => {
      const deadline = performance.now() + timeoutMs;
      while (!check()) {
        if (performance.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms\n${output()}`);
        await sleep(50);
      }
    };
    const health = async (): Promise<unknown> => {
      const res = await fetch(`http://localhost:${port}/health`);
      expect(res.status).toBe(200);
      return res.json();
    };
    try {
      await waitFor("ready", () => dev.stdout().includes('"message":"Secrets loaded, ready"'), 40_000);
      // No dist/ in a fresh copy: this server runs from src/.
      expect(output()).not.toContain("dist/src/main.js");
      await expect(health()).resolves.toMatchObject({ status: "ok", version: "0.1.0" });

      // A changed source file (a new mtime is what an editor's save gives) restarts the server.
      const now = new Date();
      await utimes(join(clone.dir, "src/log/index.ts"), now, now);
      await waitFor("restarted", () => listening(dev.stdout()) === 2, 40_000);
      expect(dev.stdout()).toContain("Restarting 'src/main.ts'");
      // The old process drained and stopped before the new one took the port.
      expect(dev.stdout()).toMatch(/Received SIGTERM, draining in-flight calls[\s\S]*Listening on /);
      await waitFor("ready again", () => dev.stdout().split('"Secrets loaded, ready"').length === 3, 20_000);
      await expect(health()).resolves.toMatchObject({ status: "ok" });
    } finally {
      // SIGTERM to the group; `exec` in the script leaves no shell between npm and node --watch, and
      // node --watch ends its server child. stop() returns only once nothing of the group runs.
      await dev.stop();
    }
    await expect(fetch(`http://localhost:${port}/health`)).rejects.toThrow();
  }, 90_000);
});
