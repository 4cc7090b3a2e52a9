import { readdir } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freePort, freshClone, markdownBlocks, runBash, type FreshClone } from "../support/fresh-clone.js";

// examples/README.md as a newcomer follows it: every sh block, in order, in one bash, in a fresh copy of
// the repository (test/support/fresh-clone.ts says what differs: `npm ci` is a link to the tested install,
// port 8000 a free one). test/examples/clients.test.ts covers the clients' error paths.

describe("examples/README.md, every command as written", () => {
  let clone: FreshClone;
  beforeAll(async () => {
    clone = await freshClone();
  });
  afterAll(async () => {
    await clone?.remove();
  });

  it("starts a server, mints a token, and runs the TypeScript and the Python client", async () => {
    const blocks = await markdownBlocks("examples/README.md", { from: "# Client examples" });
    expect(blocks).toHaveLength(3);
    const port = await freePort();
    // Stop at the first failing command, as a reader would, instead of running the rest regardless.
    const script = ["set -e", ...blocks].join("\n").replaceAll("localhost:8000", `localhost:${port}`);
    const result = await runBash(script, { cwd: clone.dir, env: { PORT: String(port) }, timeoutMs: 150_000 });
    const output = `${result.stdout}\n--- stderr ---\n${result.stderr}`;
    expect(result.code, output).toBe(0);
    // The server (started in the background by the README) and the clients share the terminal: a server
    // log line can land in the middle of a client's line (after a stream's text, before its newline), so a
    // client's line is read up to the start of a server line.
    const lines = result.stdout.split("\n").map((line) => line.replace(/\{"severity":.*$/, ""));
    const printed = (prefix: string) => lines.filter((line) => line.startsWith(prefix));
    // Both clients: one completion, one stream, the stream's usage.
    expect(printed("unary: "), output).toEqual(["unary: hello", "unary: hello"]);
    expect(printed("stream: "), output).toEqual([
      "stream: hello from a stream",
      "stream: hello from a stream",
    ]);
    expect(printed("stream tokens: ").filter((l) => /^stream tokens: [1-9]\d*$/.test(l))).toHaveLength(2);
    expect(result.stderr, output).not.toMatch(/No such file or directory|Traceback|error: /);
    // protoc wrote the classes where the README says, into the folder the README made.
    expect((await readdir(join(clone.dir, "examples/python/gen/apikeyserver/v1"))).sort()).toEqual([
      "chat_pb2.py",
      "json_options_pb2.py",
    ]);
  }, 180_000);
});
