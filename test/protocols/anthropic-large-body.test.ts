import { createHash } from "node:crypto";
import { once } from "node:events";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { anthropicMaxBodyBytes } from "../../src/protocols/anthropic/anthropic-handler.js";
import { maxRequestValues } from "../../src/lib/message-limits.js";
import { startApp, type AppHarness } from "../support/app-harness.js";
import { canaryKey } from "../support/e2e-clients.js";
import { measureLoopStall, type LoopStall } from "../support/loop-stall.js";
import { curl } from "../support/server-clients.js";

// Long coding sessions send bodies far over the other surfaces' limits (Anthropic's own limit is 32 MiB).
// A 30 MB Messages body with many more JSON values than the chat surfaces' decode limit is forwarded to an
// Anthropic-backed product byte for byte, streamed back, and the server's event loop (this process; curl
// sends from another) never stalls 50 ms (monitorEventLoopDelay, best of three on a shared host, as
// test/e2e/decode-limits.test.ts measures). The upstream here only hashes what it receives: the mock
// provider would JSON.parse 30 MB on the very loop being measured.

const model = "claude-sonnet-4-5";
const events = [
  {
    type: "message_start",
    message: {
      id: "msg_big",
      type: "message",
      role: "assistant",
      content: [],
      model,
      stop_reason: null,
      stop_sequence: null,
      usage: { input_tokens: 7_000_000, output_tokens: 1 },
    },
  },
  { type: "content_block_start", index: 0, content_block: { type: "text", text: "" } },
  { type: "ping" },
  { type: "content_block_delta", index: 0, delta: { type: "text_delta", text: "Read it all." } },
  { type: "content_block_stop", index: 0 },
  {
    type: "message_delta",
    delta: { stop_reason: "end_turn", stop_sequence: null },
    usage: { output_tokens: 4 },
  },
  { type: "message_stop" },
];
const sse = events.map((e) => `event: ${e.type}\ndata: ${JSON.stringify(e)}\n\n`).join("");

/** A Messages body of about `bytes`: many turns of text blocks (tens of thousands of values), `stream` last. */
function largeBody(bytes: number): Buffer {
  const turn = (i: number) =>
    JSON.stringify({
      role: i % 2 === 0 ? "user" : "assistant",
      content: [{ type: "text", text: `turn ${i} ${'lorem ipsum \\"quoted\\" dolor '.repeat(40)}` }],
    });
  const sample = turn(0).length + 1;
  const turns = Math.floor((bytes - 200) / sample) | 1;
  const messages = Array.from({ length: turns }, (_, i) => turn(i)).join(",");
  return Buffer.from(`{"model":"${model}","max_tokens":1024,"messages":[${messages}],"stream":true}`);
}

let upstream: Server;
let upstreamUrl: string;
const received: { sha256: string; bytes: number; key: string | undefined; auth: string | undefined }[] = [];
let app: AppHarness;
let token: string;
let dir: string;

beforeAll(async () => {
  upstream = createServer((req, res) => {
    const hash = createHash("sha256");
    let bytes = 0;
    req.on("data", (chunk: Buffer) => {
      hash.update(chunk);
      bytes += chunk.length;
    });
    req.on("end", () => {
      received.push({
        sha256: hash.digest("hex"),
        bytes,
        key: req.headers["x-api-key"] as string | undefined,
        auth: req.headers["authorization"],
      });
      res.writeHead(200, { "content-type": "text/event-stream" });
      res.end(sse);
    });
  });
  upstream.listen(0, "127.0.0.1");
  await once(upstream, "listening");
  upstreamUrl = `http://127.0.0.1:${(upstream.address() as AddressInfo).port}`;
  app = await startApp({
    products: {
      "product-claude": {
        providers: { anthropic: { api_key: canaryKey, base_url: upstreamUrl, models: [model] } },
      },
    },
    logLevel: "info",
  });
  token = await app.token({ claims: { products: ["product-claude"] } });
  dir = await mkdtemp(join(tmpdir(), "aks-anthropic-large-"));
});
afterAll(async () => {
  await app.close();
  upstream.closeAllConnections();
  await new Promise((resolve) => upstream.close(resolve));
  await rm(dir, { recursive: true, force: true });
});

const send = (file: string) =>
  curl([
    "-H",
    `authorization: Bearer ${token}`,
    "-H",
    "content-type: application/json",
    "-H",
    "anthropic-version: 2023-06-01",
    "--data-binary",
    `@${file}`,
    `${app.url}/anthropic/product-claude/v1/messages?beta=true`,
  ]);

describe("large bodies on the Anthropic surface", () => {
  it("a 30 MB body is forwarded byte for byte and streamed back without a 50 ms stall", async () => {
    const body = largeBody(30_000_000);
    expect(body.length).toBeGreaterThan(29_000_000);
    expect(body.length).toBeLessThanOrEqual(anthropicMaxBodyBytes);
    // Far more values than the decode limit of the chat surfaces: this surface does not parse the body.
    expect(body.toString("latin1").split("{").length).toBeGreaterThan(4 * maxRequestValues);
    const file = join(dir, "large.json");
    await writeFile(file, body);
    const digest = createHash("sha256").update(body).digest("hex");
    const stalls: LoopStall[] = [];
    for (let attempt = 0; attempt < 3 && !stalls.some((s) => s.wallMs < 50); attempt++) {
      const before = received.length;
      const { result: res, stall } = await measureLoopStall(() => send(file));
      expect(res.status).toBe(200);
      expect(res.body).toBe(sse);
      expect(received[before]).toEqual({
        sha256: digest,
        bytes: body.length,
        key: canaryKey,
        auth: undefined,
      });
      stalls.push(stall);
    }
    const report = stalls
      .map((s) => `wall ${s.wallMs.toFixed(1)} ms / cpu ${s.cpuMs.toFixed(1)} ms`)
      .join(", ");
    // Reported for the record (README, "Anthropic Messages API": large bodies).
    console.log(`30 MB body: largest event-loop stall per attempt: ${report}`);
    // On an idle host the wall-time stall is the measure (test/e2e/decode-limits.test.ts); on a loaded one
    // (the CI's cores shared) wall time counts the waits for a core, so the main thread's own CPU time per
    // loop turn is what is asserted too: one of them must stay under 50 ms in the best attempt.
    const best = Math.min(...stalls.map((s) => Math.min(s.wallMs, s.cpuMs)));
    expect(best, `largest loop stall per attempt: ${report}`).toBeLessThan(50);
  });

  it("a body over 32 MiB is 413 request_too_large in Anthropic's shape", async () => {
    const file = join(dir, "too-large.json");
    await writeFile(file, largeBody(anthropicMaxBodyBytes + 1024));
    const before = received.length;
    const res = await send(file);
    expect(res.status).toBe(413);
    expect(JSON.parse(res.body)).toMatchObject({
      type: "error",
      error: { type: "request_too_large", message: "Request too large" },
    });
    expect(received.length).toBe(before);
  });
});
