import { ConnectError, createClient } from "@connectrpc/connect";
import * as http2 from "node:http2";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ChatCompletionRequestSchema, ChatService } from "../../gen/apikeyserver/v1/chat_pb.js";
import { fromRestJson } from "../../src/json/index.js";
import { startApp, type AppHarness } from "../support/app-harness.js";
import { transportOf, type TransportName } from "../support/transports.js";

// Every answer on the port carries `x-request-id` (the caller's own when sane, else a fresh UUID), and the
// access line of the request has the same id as `requestId` and the client's address as
// `httpRequest.remoteIp` (src/edge/request-id.ts, src/edge/client-address.ts).

const page = "https://app.example.com";
const uuid = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
const hello = { model: "echo-1", messages: [{ role: "user", content: "Hello" }] };

type Surface = "REST" | "OpenAI surface" | TransportName;
const surfaces: readonly Surface[] = [
  "REST",
  "OpenAI surface",
  "Connect JSON, HTTP/1.1",
  "Connect binary, HTTP/2",
  "gRPC-Web, HTTP/1.1",
  "gRPC, HTTP/2",
];

describe("the request id on every protocol and answer", () => {
  let app: AppHarness;
  let token: string;
  beforeAll(async () => {
    app = await startApp({ env: { API_KEY_SERVER_CORS_ORIGINS: page } });
    token = await app.token();
  });
  afterAll(async () => {
    await app.close();
  });

  /** One chat call on one surface; resolves with the x-request-id its answer carried. */
  async function call(surface: Surface, authorized: boolean, requestId?: string): Promise<string | null> {
    const headers: Record<string, string> = {
      ...(authorized ? { authorization: `Bearer ${token}` } : {}),
      ...(requestId === undefined ? {} : { "x-request-id": requestId }),
    };
    if (surface === "REST" || surface === "OpenAI surface") {
      const path = surface === "REST" ? "/v1/chat/product-dev" : "/openai/product-dev/v1/chat/completions";
      const res = await fetch(`${app.url}${path}`, {
        method: "POST",
        headers: { ...headers, "content-type": "application/json" },
        body: JSON.stringify(hello),
      });
      await res.arrayBuffer();
      expect(res.status).toBe(authorized ? 200 : 401);
      return res.headers.get("x-request-id");
    }
    const client = createClient(ChatService, transportOf(surface, app.url));
    let seen: string | null = null;
    try {
      await client.createChatCompletion(
        fromRestJson(ChatCompletionRequestSchema, { ...hello, product: "product-dev" }),
        { headers, onHeader: (h) => (seen = h.get("x-request-id")) },
      );
      expect(authorized).toBe(true);
    } catch (err) {
      expect(authorized).toBe(false);
      seen ??= ConnectError.from(err).metadata.get("x-request-id");
    }
    return seen;
  }

  /** The access line with this request id, once written. */
  async function accessLine(requestId: string): Promise<Record<string, unknown>> {
    for (let i = 0; i < 200; i++) {
      const line = app.logs
        .records()
        .find((r) => r["requestId"] === requestId && typeof r["httpRequest"] === "object");
      if (line !== undefined) return line;
      await new Promise((r) => setTimeout(r, 10));
    }
    throw new Error(`no access line with requestId ${requestId}`);
  }

  const cases = surfaces.flatMap((surface) =>
    [true, false].map((authorized) => ({ surface, authorized, outcome: authorized ? "answer" : "401" })),
  );

  it.each(cases)("$surface, $outcome: the caller's id comes back and is in the access line", async (c) => {
    const mine = `mine-${c.surface.replace(/[^A-Za-z]/g, "")}-${c.outcome}`;
    expect(await call(c.surface, c.authorized, mine)).toBe(mine);
    const line = await accessLine(mine);
    expect((line["httpRequest"] as Record<string, unknown>)["remoteIp"]).toBe("127.0.0.1");
    if (!c.authorized) {
      // The refusal's own line joins the access line by the same id.
      const refusal = app.logs
        .records()
        .find((r) => r["message"] === "Authentication failed" && r["requestId"] === mine);
      expect(refusal).toBeDefined();
    }
  });

  it.each(surfaces)("%s: without an id of the caller's, a fresh UUID per request", async (surface) => {
    const first = await call(surface, true);
    const second = await call(surface, true);
    expect(first).toMatch(uuid);
    expect(second).toMatch(uuid);
    expect(second).not.toBe(first);
    await accessLine(first ?? "");
  });

  it("an id that is not sane (a space, too long) is replaced, not echoed", async () => {
    for (const bad of ["a b", "x".repeat(129)]) {
      const res = await fetch(`${app.url}/health`, { headers: { "x-request-id": bad } });
      expect(res.headers.get("x-request-id")).toMatch(uuid);
    }
  });

  it.each([
    ["an allowed preflight", page, 204],
    ["a refused preflight", "https://evil.example", 403],
  ] as const)("%s carries it too; a refused one's line names the origin", async (_name, origin, status) => {
    const res = await fetch(`${app.url}/v1/chat/product-dev`, {
      method: "OPTIONS",
      headers: { origin, "access-control-request-method": "POST", "x-request-id": `pre-${status}` },
    });
    expect(res.status).toBe(status);
    expect(res.headers.get("x-request-id")).toBe(`pre-${status}`);
    const line = await accessLine(`pre-${status}`);
    if (status === 403) expect(line["origin"]).toBe(origin);
    else expect(line["origin"]).toBeUndefined();
  });

  it("an allowed page can read it (Access-Control-Expose-Headers)", async () => {
    const res = await fetch(`${app.url}/health`, { headers: { origin: page } });
    expect(res.headers.get("access-control-expose-headers")?.split(", ")).toContain("x-request-id");
  });

  it("request headers over the limit (431 over HTTP/2) carry it", async () => {
    const session = http2.connect(app.url);
    try {
      const headers = await new Promise<http2.IncomingHttpHeaders>((resolve, reject) => {
        const req = session.request({
          ":path": "/health",
          "x-request-id": "big-headers",
          "x-big": "b".repeat(20_000),
        });
        req.once("response", resolve);
        req.once("error", reject);
        req.resume();
        req.end();
      });
      expect(headers[":status"]).toBe(431);
      expect(headers["x-request-id"]).toBe("big-headers");
    } finally {
      session.close();
    }
  });
});

describe("the client address behind a trusted proxy", () => {
  it.each([
    ["0 (not trusted): the socket's address, the header ignored", "0", "127.0.0.1"],
    ["1 (Cloud Run): the last X-Forwarded-For entry", "1", "203.0.113.7"],
    ["2: the second entry from the right", "2", "198.51.100.1"],
  ])("API_KEY_SERVER_TRUST_PROXY=%s", async (_name, trust, expected) => {
    const app = await startApp({ env: { API_KEY_SERVER_TRUST_PROXY: trust } });
    try {
      const res = await fetch(`${app.url}/health`, {
        headers: { "x-forwarded-for": "198.51.100.1, 203.0.113.7", "x-request-id": "behind-proxy" },
      });
      expect(res.status).toBe(200);
      let line: Record<string, unknown> | undefined;
      for (let i = 0; i < 200 && line === undefined; i++) {
        line = app.logs.records().find((r) => r["requestId"] === "behind-proxy");
        if (line === undefined) await new Promise((r) => setTimeout(r, 10));
      }
      expect((line?.["httpRequest"] as Record<string, unknown>)["remoteIp"]).toBe(expected);
    } finally {
      await app.close();
    }
  });
});
