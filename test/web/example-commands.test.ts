import { execFile, spawn } from "node:child_process";
import { createServer, type AddressInfo } from "node:net";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  endGroup,
  freePort,
  freshClone,
  markdownBlocks,
  realNpm,
  runBash,
  startBash,
  userPath,
  type FreshClone,
} from "../support/fresh-clone.js";
import { repoRoot } from "../support/server-process.js";

// The README's "Web clients" commands for the example page, as written, in a fresh copy of the repository
// (test/support/fresh-clone.ts says what differs: `npm ci` is a link to the tested install, the ports are
// free ones). test/web/browser.test.ts drives the page itself in Chromium.

/** Polls `url` until it answers 200; rejects after `timeoutMs`, with what the commands printed. */
async function until200(url: string, timeoutMs: number, output: () => string): Promise<Response> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const res = await fetch(url).catch(() => undefined);
    if (res?.status === 200) return res;
    await res?.body?.cancel();
    if (performance.now() > deadline) throw new Error(`${url}: no 200 within ${timeoutMs} ms\n${output()}`);
    await sleep(200);
  }
}

describe("README, Web clients: the example page's commands", () => {
  let clone: FreshClone;
  beforeAll(async () => {
    clone = await freshClone();
  });
  afterAll(async () => {
    await clone?.remove();
  });

  it("serve the page on WEB_PORT and the server on PORT, and the echo reply streams word by word", async () => {
    const blocks = await markdownBlocks("README.md", { from: "**Example page**", to: "![The example page" });
    expect(blocks).toHaveLength(1);
    const block = blocks[0] ?? "";
    const port = await freePort();
    const webPort = await freePort();
    const origin = `http://localhost:${webPort}`;
    // PORT is exported for every command, as `export PORT=...` leaves it in a shell: only the server takes it.
    const bash = startBash(block.replaceAll("http://localhost:5173", origin), {
      cwd: clone.dir,
      env: { PORT: String(port), WEB_PORT: String(webPort) },
    });
    const output = () => `${bash.stdout()}\n--- stderr ---\n${bash.stderr()}`;
    try {
      const page = await until200(`${origin}/`, 140_000, output);
      expect(await page.text()).toContain('<input id="server" value="http://localhost:8000" />');
      const server = `http://localhost:${port}`;
      await (await until200(`${server}/health`, 30_000, output)).body?.cancel();

      const token = await runBash("npm run -s cli -- token --product product-dev --sub me", {
        cwd: clone.dir,
        timeoutMs: 30_000,
      });
      expect(token.code, token.stderr).toBe(0);

      const preflight = await fetch(`${server}/v1/chat/product-dev:stream`, {
        method: "OPTIONS",
        headers: {
          origin,
          "access-control-request-method": "POST",
          "access-control-request-headers": "authorization, content-type",
        },
      });
      expect(preflight.status).toBe(204);
      expect(preflight.headers.get("access-control-allow-origin")).toBe(origin);

      // What the page does: the SSE route, read as it arrives.
      const res = await fetch(`${server}/v1/chat/product-dev:stream`, {
        method: "POST",
        headers: {
          origin,
          authorization: `Bearer ${token.stdout.trim()}`,
          "content-type": "application/json",
        },
        body: JSON.stringify({
          model: "echo-1",
          stream: true,
          messages: [{ role: "user", content: "one two three four five six" }],
        }),
      });
      expect(res.status).toBe(200);
      expect(res.headers.get("access-control-allow-origin")).toBe(origin);
      const arrivals: { at: number; text: string }[] = [];
      const decoder = new TextDecoder();
      if (res.body === null) throw new Error("no body");
      for await (const value of res.body as AsyncIterable<Uint8Array>) {
        const at = performance.now();
        for (const match of decoder.decode(value, { stream: true }).matchAll(/"content":"([^"]+)"/g)) {
          arrivals.push({ at, text: match[1] ?? "" });
        }
      }
      expect(arrivals.map((a) => a.text).join("")).toBe("one two three four five six");
      // Six words, each after the embedded product's 40 ms pause: they arrive apart, not all at once.
      const spread = (arrivals.at(-1)?.at ?? 0) - (arrivals[0]?.at ?? 0);
      expect(spread).toBeGreaterThanOrEqual(5 * 30);
      expect(new Set(arrivals.map((a) => a.at)).size).toBeGreaterThanOrEqual(4);
    } finally {
      await bash.stop();
    }
    // Stopping the commands stopped both servers.
    await expect(fetch(`${origin}/`)).rejects.toThrow();
    expect(output()).not.toMatch(/already in use/);
  }, 200_000);
});

describe("examples/web/serve.mjs refuses a bad WEB_PORT with one line", () => {
  const serve = (webPort: string) =>
    new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
      execFile(
        process.execPath,
        ["examples/web/serve.mjs"],
        { cwd: repoRoot, env: { PATH: userPath(), WEB_PORT: webPort, PORT: "1" }, timeout: 15_000 },
        (err, stdout, stderr) => resolve({ code: err ? (err.code as number) : 0, stdout, stderr }),
      );
    });

  it("not a port number", async () => {
    expect(await serve("abc")).toStrictEqual({
      code: 1,
      stdout: "",
      stderr: 'example:web: WEB_PORT: expected a port number (1-65535), got "abc"\n',
    });
  });

  it("a port in use", async () => {
    const taken = createServer();
    await new Promise<void>((resolve) => taken.listen(0, "localhost", resolve));
    const { port } = taken.address() as AddressInfo;
    try {
      expect(await serve(String(port))).toStrictEqual({
        code: 1,
        stdout: "",
        stderr: `example:web: port ${port} is already in use: set WEB_PORT to another port\n`,
      });
    } finally {
      taken.close();
    }
  });
});

describe("npm scripts that start servers end them when npm is stopped", () => {
  it.each([
    ["example:web", "example page: "],
    ["start", "Listening on "],
    // node --watch and the server it runs.
    ["dev", "Listening on "],
  ])(
    "npm run %s: SIGTERM to npm's PID leaves nothing running",
    async (script, ready) => {
      const port = await freePort();
      const env: NodeJS.ProcessEnv = {
        PATH: userPath(),
        HOME: process.env["HOME"] ?? "/tmp",
        PORT: String(port),
        WEB_PORT: String(port),
        API_KEY_SERVER_HOST: "127.0.0.1",
      };
      // Its own process group, so the test can see whether anything of it is left.
      const npm = spawn(realNpm(), ["run", script], {
        cwd: repoRoot,
        env,
        detached: true,
        stdio: ["ignore", "pipe", "pipe"],
      });
      const group = npm.pid ?? 0;
      let stdout = "";
      npm.stdout.setEncoding("utf8").on("data", (chunk: string) => (stdout += chunk));
      npm.stderr.resume();
      const exited = new Promise<unknown>((resolve) => npm.once("exit", resolve));
      try {
        const deadline = performance.now() + 30_000;
        while (!stdout.includes(ready)) {
          if (performance.now() > deadline) throw new Error(`no ${JSON.stringify(ready)}:\n${stdout}`);
          await sleep(50);
        }
        process.kill(group, "SIGTERM");
        await exited;
        // Nothing of the group is left (an orphaned node child would still be in it) within a few seconds
        // (the server drains first: nothing is in flight).
        const gone = performance.now() + 10_000;
        const alive = (): boolean => {
          try {
            process.kill(-group, 0);
            return true;
          } catch {
            return false;
          }
        };
        while (alive() && performance.now() < gone) await sleep(50);
        expect(alive()).toBe(false);
      } finally {
        await endGroup(group);
      }
    },
    60_000,
  );
});
