import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startApp, type AppHarness } from "../support/app-harness.js";
import { canaryPieces, e2eProducts } from "../support/e2e-clients.js";
import {
  behaviors,
  defaultCompletion,
  startMockProvider,
  type Behavior,
  type MockProvider,
} from "../support/mock-provider.js";
import { curl } from "../support/server-clients.js";

// Issue 11 item 4: every request on the port gets exactly one access line from the edge
// (src/edge/access-log.ts), whatever answered it, over HTTP/1.1 and h2c.

const chat = "apikeyserver.v1.ChatService/CreateChatCompletion";
const hello = JSON.stringify({ model: "gpt-4o-mini", messages: [{ role: "user", content: "Hello" }] });
const maxBodyBytes = 4096;

interface Expected {
  readonly status: number;
  readonly severity: "DEBUG" | "INFO" | "WARNING" | "ERROR";
  readonly rpc?: string | undefined;
  readonly fields?: Record<string, unknown>;
  /** Other lines the request causes, by message: each must carry the request's id. */
  readonly joined?: readonly string[];
}

interface Kind {
  readonly name: string;
  readonly behavior?: Behavior;
  /** curl arguments after the HTTP version flag; `url` is the server's base URL, `auth` a bearer header. */
  readonly args: (url: string, auth: string) => string[];
  /** The access lines this one request writes (none when Node answers it before any handler). */
  readonly lines: (http2: boolean) => Expected[];
  readonly sub?: string;
}

const json = ["-H", "content-type: application/json"];

const kinds: Kind[] = [
  {
    name: "a proxied success",
    behavior: behaviors.json(200, defaultCompletion),
    args: (url, auth) => [...json, "-H", auth, "-d", hello, `${url}/v1/chat/product-dev`],
    lines: () => [
      {
        status: 200,
        severity: "INFO",
        rpc: chat,
        fields: {
          product: "product-dev",
          model: "gpt-4o-mini",
          caller: "jwt:svc-test",
          promptTokens: 9,
          completionTokens: 2,
          totalTokens: 11,
        },
      },
    ],
  },
  {
    name: "an unknown route",
    args: (url) => [`${url}/no/such/route?x=1`],
    lines: () => [{ status: 404, severity: "WARNING" }],
  },
  {
    name: "a known path with another method",
    args: (url, auth) => ["-H", auth, `${url}/v1/chat/product-dev`],
    lines: () => [{ status: 405, severity: "WARNING", rpc: undefined }],
  },
  {
    name: "a body that is not JSON (415)",
    args: (url, auth) => [
      "-H",
      "content-type: text/plain",
      "-H",
      auth,
      "-d",
      "hi",
      `${url}/v1/chat/product-dev`,
    ],
    lines: () => [{ status: 415, severity: "WARNING", rpc: chat }],
  },
  {
    name: "malformed JSON",
    args: (url, auth) => [...json, "-H", auth, "-d", '{"model": ', `${url}/v1/chat/product-dev`],
    lines: () => [{ status: 400, severity: "WARNING", rpc: chat }],
  },
  {
    name: "an unknown field",
    args: (url, auth) => [
      ...json,
      "-H",
      auth,
      "-d",
      '{"model":"m","surprise":1}',
      `${url}/v1/chat/product-dev`,
    ],
    lines: () => [{ status: 400, severity: "WARNING", rpc: chat }],
  },
  {
    name: "a body over the limit",
    args: (url, auth) => [
      ...json,
      "-H",
      auth,
      "-d",
      "x".repeat(maxBodyBytes + 1),
      `${url}/v1/chat/product-dev`,
    ],
    lines: () => [{ status: 413, severity: "WARNING", rpc: chat }],
  },
  {
    name: "request headers over the limit (431; HTTP/1.1: Node answers before any handler)",
    args: (url) => ["-H", `x-big: ${"b".repeat(20_000)}`, `${url}/health`],
    lines: (h2) => (h2 ? [{ status: 431, severity: "WARNING" }] : []),
  },
  {
    name: "no credentials",
    args: (url) => [...json, "-d", hello, `${url}/v1/chat/product-dev`],
    lines: () => [{ status: 401, severity: "WARNING", rpc: chat, joined: ["Authentication failed"] }],
  },
  {
    name: "a caller over its rate limit",
    behavior: behaviors.json(200, defaultCompletion),
    sub: "limited",
    args: (url, auth) => [...json, "-H", auth, "-d", hello, `${url}/v1/chat/product-limited`],
    lines: () => [
      {
        status: 429,
        severity: "WARNING",
        rpc: chat,
        // Which limit tripped, and the Retry-After the caller was given (one request a minute: up to 60 s).
        fields: {
          product: "product-limited",
          limit: "requests_per_minute",
          limitMax: 1,
          retryAfterSeconds: expect.any(Number) as unknown,
          retryAfterMs: expect.any(Number) as unknown,
        },
      },
    ],
  },
  {
    name: "an upstream failure",
    behavior: behaviors.json(500, { error: { message: "boom" } }),
    args: (url, auth) => [...json, "-H", auth, "-d", hello, `${url}/v1/chat/product-dev`],
    lines: () => [
      {
        status: 502,
        severity: "ERROR",
        rpc: chat,
        fields: { model: "gpt-4o-mini" },
        joined: ["Upstream call failed"],
      },
    ],
  },
  {
    name: "a client that gives up (curl --max-time)",
    behavior: behaviors.delay(60_000, behaviors.json(200, defaultCompletion)),
    args: (url, auth) => ["--max-time", "1", ...json, "-H", auth, "-d", hello, `${url}/v1/chat/product-dev`],
    lines: () => [{ status: 499, severity: "INFO", rpc: chat, fields: { code: "CANCELLED", cut: "client" } }],
  },
  {
    name: "a health check (quiet: DEBUG)",
    args: (url) => [`${url}/health`],
    lines: () => [{ status: 200, severity: "DEBUG", rpc: "apikeyserver.v1.HealthService/Check" }],
  },
];

describe("one access line per request, over HTTP/1.1 and h2c", () => {
  let mock: MockProvider;
  let app: AppHarness;
  beforeAll(async () => {
    mock = await startMockProvider();
    const products = {
      ...e2eProducts(mock.url),
      "product-limited": {
        rate_limit: { requests_per_minute: 1 },
        providers: { echo: { models: ["gpt-4o-mini"] } },
      },
    };
    app = await startApp({ products, env: { API_KEY_SERVER_MAX_BODY_BYTES: String(maxBodyBytes) } });
  });
  afterAll(async () => {
    await app.close();
    await mock.close();
  });

  const table = kinds.flatMap((kind) =>
    (["--http1.1", "--http2-prior-knowledge"] as const).map((flag) => ({ ...kind, flag })),
  );

  it.each(table)("$name ($flag)", async (kind) => {
    const h2 = kind.flag === "--http2-prior-knowledge";
    if (kind.behavior !== undefined) mock.setBehavior(kind.behavior);
    const products = ["product-dev", "product-limited"];
    const sub = kind.sub === undefined ? "svc-test" : `${kind.sub}-${h2 ? "h2" : "h1"}`;
    const auth = `authorization: Bearer ${await app.token({ claims: { sub, products } })}`;
    if (kind.sub !== undefined) {
      // The first call of this caller uses up its one request per minute.
      const first = await curl([kind.flag, ...kind.args(app.url, auth)]);
      expect(first.status).toBe(200);
    }
    const expected = kind.lines(h2);
    const from = app.logs.lines.length;
    // A sane id of the caller's own is kept (src/edge/request-id.ts), so every line can be found by it.
    const requestId = `req-${kind.name.length}-${h2 ? "h2" : "h1"}-${Date.now()}`;
    const res = await curl([kind.flag, "-H", `x-request-id: ${requestId}`, ...kind.args(app.url, auth)]);
    if (expected[0] !== undefined && expected[0].status !== 499) expect(res.status).toBe(expected[0].status);

    const access = () =>
      app.logs
        .records()
        .slice(from)
        .filter((r) => typeof r["httpRequest"] === "object");
    for (let i = 0; i < 200 && access().length < expected.length; i++) {
      await new Promise((r) => setTimeout(r, 25));
    }
    // A little longer, to catch a second line for the same request.
    await new Promise((r) => setTimeout(r, 100));
    const lines = access();
    expect(lines).toHaveLength(expected.length);
    lines.forEach((line, i) => {
      const want = expected[i] as Expected;
      expect(line).toMatchObject({
        severity: want.severity,
        httpRequest: { status: want.status, protocol: h2 ? "HTTP/2" : "HTTP/1.1" },
        ...want.fields,
      });
      expect(line["rpc"]).toBe(want.rpc);
      const request = line["httpRequest"] as Record<string, unknown>;
      expect(request["requestMethod"]).toMatch(/^(GET|POST)$/);
      expect(request["requestUrl"]).toMatch(/^\//);
      expect(request["latency"]).toMatch(/^\d+\.\d{6}s$/);
      expect(line["protocol"]).toMatch(/^(rest|connect|grpc|grpc-web)$/);
      // Joinable: the request id, and the client's address (no trusted proxy: the socket's peer).
      expect(line["requestId"]).toBe(requestId);
      expect(request["remoteIp"]).toBe("127.0.0.1");
      if (want.status === 429) {
        expect(line["retryAfterSeconds"]).toBeGreaterThanOrEqual(1);
        expect(line["retryAfterSeconds"]).toBeLessThanOrEqual(60);
      }
      for (const message of want.joined ?? []) {
        const joined = app.logs
          .records()
          .slice(from)
          .filter((r) => r["message"] === message);
        expect(joined.length, message).toBeGreaterThan(0);
        for (const other of joined) expect(other["requestId"], message).toBe(requestId);
      }
    });
    for (const piece of canaryPieces) expect(app.logs.text()).not.toContain(piece);
  });
});
