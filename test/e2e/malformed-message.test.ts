import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { startApp, type AppHarness } from "../support/app-harness.js";
import { curl } from "../support/server-clients.js";

/**
 * Issue 18, item 4, on the composed app with curl: a request message that is not valid protobuf binary
 * (here a string field that announces 16 bytes and has 2: connect's "premature EOF") answers
 * INVALID_ARGUMENT `Malformed request message` — HTTP 400 over Connect — instead of a 500 INTERNAL, over
 * Connect (unary and streaming), gRPC-Web and gRPC (the gRPC codec, unary and server
 * streaming), with exactly one access line, logged as the caller's fault (WARNING 400). The caller
 * is authenticated: without credentials the request is refused (401) before its message is decoded.
 */

/** ListModelsRequest{product: <16 bytes announced, 2 sent>}. */
const malformed = Buffer.from([0x0a, 0x10, 0x61, 0x62]);
const service = "/apikeyserver.v1.ChatService";

let app: AppHarness;
let dir: string;
const files: Record<string, string> = {};

function frame(flags: number, message: Buffer): Buffer {
  const head = Buffer.alloc(5);
  head[0] = flags;
  head.writeUInt32BE(message.length, 1);
  return Buffer.concat([head, message]);
}

beforeAll(async () => {
  app = await startApp();
  dir = await mkdtemp(join(tmpdir(), "aks-malformed-"));
  files["raw"] = join(dir, "raw.bin");
  files["framed"] = join(dir, "framed.bin");
  await writeFile(files["raw"], malformed);
  await writeFile(files["framed"], frame(0, malformed));
});
afterAll(async () => {
  await app.close();
  await rm(dir, { recursive: true, force: true });
});
beforeEach(() => {
  app.logs.lines.length = 0;
});

interface Case {
  readonly name: string;
  readonly args: readonly string[];
  readonly method: string;
  /** What the caller sees, in the protocol's form. */
  readonly expect: (res: { status: number; text: string; body: string }) => void;
}

/** gRPC over h2c: the status is in the trailers curl dumps with the headers. */
const grpc = {
  args: [
    "--http2-prior-knowledge",
    "-D",
    "-",
    "-H",
    "content-type: application/grpc",
    "-H",
    "te: trailers",
    "--data-binary",
    "@framed",
  ],
  expect: (res: { text: string }) => {
    expect(res.text).toMatch(/grpc-status: ?3\r\n/);
    expect(res.text).toMatch(/grpc-message: ?Malformed request message\r\n/);
  },
} as const;

const cases: readonly Case[] = [
  {
    name: "Connect unary (HTTP/1.1)",
    method: "ListModels",
    args: ["-H", "content-type: application/proto", "--data-binary", "@raw"],
    expect: (res) => {
      expect(res.status).toBe(400);
      expect(JSON.parse(res.body)).toMatchObject({
        code: "invalid_argument",
        message: "Malformed request message",
      });
    },
  },
  {
    name: "Connect streaming (HTTP/1.1)",
    method: "StreamChatCompletion",
    args: ["-H", "content-type: application/connect+proto", "--data-binary", "@framed"],
    expect: (res) => {
      expect(res.status).toBe(200);
      expect(res.text).toContain('"code":"invalid_argument"');
      expect(res.text).toContain('"message":"Malformed request message"');
    },
  },
  {
    name: "gRPC-Web (HTTP/1.1)",
    method: "ListModels",
    args: ["-H", "content-type: application/grpc-web+proto", "--data-binary", "@framed"],
    expect: (res) => {
      expect(res.text).toMatch(/grpc-status: ?3\r\n/);
      expect(res.text).toMatch(/grpc-message: ?Malformed%20request%20message\r\n/);
    },
  },
  {
    name: "gRPC unary (the gRPC codec, HTTP/2)",
    method: "ListModels",
    ...grpc,
  },
  {
    name: "gRPC streaming (the gRPC codec, HTTP/2)",
    method: "StreamChatCompletion",
    ...grpc,
  },
];

describe.each(cases)("a malformed protobuf message over $name", ({ args, method, expect: check }) => {
  it("answers INVALID_ARGUMENT, with one access line saying 400", async () => {
    const resolved = args.map((a) => (a.startsWith("@") ? `@${files[a.slice(1)] ?? ""}` : a));
    // Authenticated: an unauthenticated caller is refused before its message is decoded at all.
    const auth = ["-H", `authorization: Bearer ${await app.token()}`];
    const res = await curl([...resolved, ...auth, `${app.url}${service}/${method}`]);
    check({ status: res.status, text: res.stdout, body: res.body });
    expect(res.stdout).not.toContain("parse binary");
    const lines = app.logs.records().filter((r) => r["httpRequest"] !== undefined);
    expect(lines).toMatchObject([
      { severity: "WARNING", httpRequest: { status: 400 }, code: "INVALID_ARGUMENT" },
    ]);
  });
});
