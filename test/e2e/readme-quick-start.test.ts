import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freePort, freshClone, markdownBlocks, runBash, type FreshClone } from "../support/fresh-clone.js";

// The README's quick start, pasted as one block into bash on a fresh clone (test/support/fresh-clone.ts
// says what differs: `npm ci` is a link to the tested install, port 8000 a free one). The block builds,
// starts the server in the background, waits for it, makes a key pair with the server already running
// (which must use it at once, with no restart) and calls it.

describe("README, Quick start", () => {
  let clone: FreshClone;
  beforeAll(async () => {
    clone = await freshClone();
  });
  afterAll(async () => {
    await clone?.remove();
  });

  it("works pasted as one block on a fresh clone", async () => {
    const blocks = await markdownBlocks("README.md", { from: "## Quick start", to: "\n## " });
    const block = blocks[0] ?? "";
    // One server start, and no restart after keygen.
    expect(block.match(/npm start/g)).toHaveLength(1);
    expect(block).toContain("npm run cli -- keygen");
    const port = await freePort();
    const script = block.replaceAll("localhost:8000", `localhost:${port}`);
    const result = await runBash(script, { cwd: clone.dir, env: { PORT: String(port) }, timeoutMs: 150_000 });
    const output = `${result.stdout}\n--- stderr ---\n${result.stderr}`;
    // The last command's answer: the echo provider's reply to "Hello", on the key keygen just wrote.
    expect(result.stdout, output).toMatch(
      /\{"id":"chatcmpl-echo-[0-9a-f]+","object":"chat\.completion",.*"message":\{"role":"assistant","content":"Hello"/,
    );
    // The wait line printed the health answer before anything called the chat endpoint.
    expect(result.stdout, output).toMatch(/\{"status":"ok",/);
    expect(result.stdout.indexOf('{"status":"ok"')).toBeLessThan(result.stdout.indexOf("chatcmpl-echo-"));
    expect(result.stderr, output).not.toMatch(/Failed to connect|Connection refused|already in use/);
    // No call was refused on the way (the token was minted from the key the server had just picked up).
    expect(result.stdout, output).not.toMatch(/"status":40\d/);
    expect(result.stdout.match(/"message":"Listening on /g), output).toHaveLength(1);
  }, 180_000);
});
