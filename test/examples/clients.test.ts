import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startApp, type AppHarness } from "../support/app-harness.js";
import { run } from "../support/server-clients.js";
import { repoRoot } from "../support/server-process.js";

// The client examples of examples/README.md, run as a user runs them (their own process, the README's
// command line) against a server on the echo provider: the generated Connect client in TypeScript and
// grpcio with protoc-generated classes in Python.

const hooks = fileURLToPath(new URL("../support/ts-hooks.mjs", import.meta.url));
const example = (path: string) => join(repoRoot, "examples", path);

/** A child in the repository with a minimal environment plus `env`. */
function runIn(file: string, args: readonly string[], env: Record<string, string>) {
  return run(file, args, 30_000, { cwd: repoRoot, env: { PATH: process.env["PATH"] ?? "", ...env } });
}

describe("client examples against the echo provider", () => {
  let app: AppHarness;
  let token: string;
  let pythonPath: string;

  beforeAll(async () => {
    app = await startApp();
    token = await app.token();
    // The command of examples/README.md, into a temporary folder instead of examples/python/gen.
    pythonPath = await mkdtemp(join(tmpdir(), "aks-python-"));
    const protoc = await runIn(
      "/usr/bin/protoc",
      [
        "-I",
        "proto",
        "-I",
        "third_party/proto",
        `--python_out=${pythonPath}`,
        "apikeyserver/v1/chat.proto",
        "apikeyserver/v1/json_options.proto",
        "google/api/annotations.proto",
        "google/api/http.proto",
      ],
      {},
    );
    expect(protoc).toMatchObject({ code: 0, stderr: "" });
  });
  afterAll(async () => {
    await app.close();
    await rm(pythonPath, { recursive: true, force: true });
  });

  const clients = [
    {
      name: "TypeScript, generated Connect client over gRPC",
      run: (args: string[], env: Record<string, string>) =>
        runIn(
          process.execPath,
          [
            "--experimental-transform-types",
            "--no-warnings",
            "--import",
            hooks,
            example("typescript/chat-client.ts"),
            ...args,
          ],
          env,
        ),
      target: () => app.url,
      unauthenticated: "error: Unauthenticated: Unauthorized\n",
    },
    {
      name: "Python, grpcio with protoc --python_out classes",
      run: (args: string[], env: Record<string, string>) =>
        runIn("/usr/bin/python3", [example("python/chat_client.py"), ...args], {
          PYTHONPATH: pythonPath,
          ...env,
        }),
      target: () => `127.0.0.1:${app.port}`,
      unauthenticated: "error: UNAUTHENTICATED: Unauthorized\n",
    },
  ];

  it.each(clients)("$name: a completion and a stream, with usage", async (client) => {
    const res = await client.run([client.target(), "product-dev"], { TOKEN: token });
    expect(res.stderr).toBe("");
    expect(res.code).toBe(0);
    const lines = res.stdout.trimEnd().split("\n");
    // The echo provider answers with the last user message.
    expect(lines.slice(0, 2)).toStrictEqual(["unary: hello", "stream: hello from a stream"]);
    expect(lines[2]).toMatch(/^stream tokens: [1-9]\d*$/);
    expect(lines).toHaveLength(3);
  });

  it.each(clients)("$name: a bad token ends with the server's code and message, exit 1", async (client) => {
    const res = await client.run([client.target(), "product-dev"], { TOKEN: "not-a-jwt" });
    expect({ code: res.code, stdout: res.stdout, stderr: res.stderr }).toStrictEqual({
      code: 1,
      stdout: "",
      stderr: client.unauthenticated,
    });
  });

  it.each(clients)("$name: no TOKEN is refused before any call, exit 2", async (client) => {
    const res = await client.run([client.target()], {});
    expect(res.code).toBe(2);
    expect(res.stderr).toMatch(/^set TOKEN to a caller JWT/);
  });
});
