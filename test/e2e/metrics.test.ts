import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startApp, type AppHarness } from "../support/app-harness.js";
import { createE2eClients, e2eProducts, type E2eClients } from "../support/e2e-clients.js";
import { promtoolCheck, scrape, series, value } from "../support/metrics-scrape.js";
import { behaviors, startMockProvider, type MockProvider } from "../support/mock-provider.js";
import { fixture } from "../upstream/helpers.js";

/**
 * The composed server with metrics on (issue 15): a known sequence of calls over REST, Connect, gRPC and
 * a stream (successes, 401, 404, 429, 502, a cancel) leaves exactly the expected counts in a real scrape of
 * the metrics port; a flood naming 10,000 unknown products adds no series; promtool accepts the scrape.
 */

const chat = "apikeyserver.v1.ChatService/CreateChatCompletion";
const stream = "apikeyserver.v1.ChatService/StreamChatCompletion";
const echo = { model: "echo-1", messages: [{ role: "user", content: "Hello" }] };
const openai = { model: "gpt-4o-mini", messages: [{ role: "user", content: "Hello" }] };
const chunks = fixture<Record<string, unknown>[]>("chat-completion-chunks.json");

let mock: MockProvider;
let app: AppHarness;
let clients: E2eClients;
let auth: string;

beforeAll(async () => {
  mock = await startMockProvider();
  app = await startApp({
    metrics: true,
    products: {
      ...e2eProducts(mock.url),
      // One request per minute: the second call is refused by our limiter.
      "product-limited": {
        rate_limit: { requests_per_minute: 1 },
        providers: { echo: { models: ["echo-1"] } },
      },
    },
  });
  clients = createE2eClients(app.url);
  auth = `Bearer ${await app.token({ claims: { products: ["product-dev", "product-limited"] } })}`;
});

afterAll(async () => {
  clients.close();
  await app.close();
  await mock.close();
});

/**
 * Scrapes until `done(text)` holds: the server records a request when its response is over, which can be a
 * moment after the client saw the end of it.
 */
async function scrapeUntil(done: (text: string) => boolean): Promise<string> {
  for (;;) {
    const text = await scrape(app.metricsUrl);
    if (done(text)) return text;
    await new Promise((resolve) => setImmediate(resolve));
  }
}

const settled = (text: string): boolean =>
  value(text, "api_key_server_in_flight_requests") === 0 && value(text, "api_key_server_open_streams") === 0;

describe("metrics after a known sequence of calls", () => {
  it("count every call exactly, by RPC, protocol, product, model and status", async () => {
    // Successes over each protocol.
    expect((await clients.chat("rest", "product-dev", echo, { authorization: auth })).code).toBe("OK");
    expect((await clients.chat("connect", "product-dev", echo, { authorization: auth })).code).toBe("OK");
    expect((await clients.chat("grpc", "product-dev", echo, { authorization: auth })).code).toBe("OK");
    // 401: no credentials (REST), a malformed token (gRPC).
    expect((await clients.chat("rest", "product-dev", echo)).status).toBe(401);
    expect((await clients.chat("grpc", "product-dev", echo, { authorization: "Bearer x.y.z" })).code).toBe(
      "UNAUTHENTICATED",
    );
    // 404: a product the configuration does not have (Connect).
    expect((await clients.chat("connect", "no-such-product", echo, { authorization: auth })).code).toBe(
      "NOT_FOUND",
    );
    // 429: the limited product's second call (REST).
    expect((await clients.chat("rest", "product-limited", echo, { authorization: auth })).status).toBe(200);
    expect((await clients.chat("rest", "product-limited", echo, { authorization: auth })).status).toBe(429);
    // 502: the provider fails (gRPC).
    mock.setBehavior(behaviors.json(500, { error: { message: "boom" } }));
    expect((await clients.chat("grpc", "product-dev", openai, { authorization: auth })).code).toBe(
      "UNAVAILABLE",
    );
    // A stream to its end (REST SSE).
    mock.setBehavior(behaviors.sse(chunks));
    expect((await clients.stream("rest", "product-dev", openai, { authorization: auth })).end.code).toBe(
      "OK",
    );
    // A stream the caller cancels while the provider is still answering (gRPC).
    mock.setBehavior(behaviors.sse(chunks.slice(0, 1), "stall"));
    const controller = new AbortController();
    const requested = mock.requests.length;
    const canceled = clients.stream("grpc", "product-dev", openai, {
      authorization: auth,
      signal: controller.signal,
    });
    await mock.whenRequested(requested + 1);
    // While the provider stalls, the call is an open stream (not an in-flight unary call).
    const during = await scrape(app.metricsUrl);
    expect([
      value(during, "api_key_server_open_streams"),
      value(during, "api_key_server_in_flight_requests"),
    ]).toEqual([1, 0]);
    controller.abort();
    expect((await canceled).end.code).toBe("CANCELLED");

    // Nothing in flight: every call above has been recorded (the edge records and leaves the live set at once).
    const text = await scrapeUntil(settled);
    expect(series(text, "api_key_server_requests_total")).toEqual(
      [
        `{code=CANCELLED,model=gpt-4o-mini,product=product-dev,protocol=grpc,rpc=${stream},status=499} 1`,
        `{code=NOT_FOUND,model=,product=unknown,protocol=connect,rpc=${chat},status=404} 1`,
        `{code=OK,model=echo-1,product=product-dev,protocol=connect,rpc=${chat},status=200} 1`,
        `{code=OK,model=echo-1,product=product-dev,protocol=grpc,rpc=${chat},status=200} 1`,
        `{code=OK,model=echo-1,product=product-dev,protocol=rest,rpc=${chat},status=200} 1`,
        `{code=OK,model=echo-1,product=product-limited,protocol=rest,rpc=${chat},status=200} 1`,
        `{code=OK,model=gpt-4o-mini,product=product-dev,protocol=rest,rpc=${stream},status=200} 1`,
        `{code=RESOURCE_EXHAUSTED,model=echo-1,product=product-limited,protocol=rest,rpc=${chat},status=429} 1`,
        `{code=UNAUTHENTICATED,model=,product=,protocol=grpc,rpc=${chat},status=401} 1`,
        `{code=UNAUTHENTICATED,model=,product=,protocol=rest,rpc=${chat},status=401} 1`,
        `{code=UNAVAILABLE,model=gpt-4o-mini,product=product-dev,protocol=grpc,rpc=${chat},status=502} 1`,
      ].sort(),
    );
    expect(
      value(text, "api_key_server_request_duration_seconds_count", {
        rpc: chat,
        protocol: "rest",
        product: "product-dev",
        model: "echo-1",
      }),
    ).toBe(1);
    expect(series(text, "api_key_server_upstream_requests_total")).toEqual([
      "{model=echo-1,outcome=ok,provider=echo} 4",
      "{model=gpt-4o-mini,outcome=canceled,provider=openai} 1",
      "{model=gpt-4o-mini,outcome=ok,provider=openai} 1",
      "{model=gpt-4o-mini,outcome=upstream_error,provider=openai} 1",
    ]);
    // The usage the providers reported: echo 9 in / 2 out per call; the finished stream's last chunk 9 / 1;
    // the failed unary call and the canceled stream, which got no usage, their estimate each
    // (src/usage/estimate.ts: 7 prompt tokens for "Hello", nothing out).
    expect(series(text, "api_key_server_tokens_total")).toEqual([
      "{direction=in,model=echo-1,product=product-dev} 27",
      "{direction=in,model=echo-1,product=product-limited} 9",
      "{direction=in,model=gpt-4o-mini,product=product-dev} 23",
      "{direction=out,model=echo-1,product=product-dev} 6",
      "{direction=out,model=echo-1,product=product-limited} 2",
      "{direction=out,model=gpt-4o-mini,product=product-dev} 1",
    ]);
    expect(series(text, "api_key_server_tokens_estimated_total")).toEqual([
      "{direction=in,model=gpt-4o-mini,product=product-dev} 14",
    ]);
    expect(series(text, "api_key_server_upstream_ttfb_seconds_count")).toEqual([
      "{model=gpt-4o-mini,provider=openai} 2",
    ]);
    expect(series(text, "api_key_server_auth_failures_total")).toEqual([
      "{method=jwt,reason=malformed_token} 1",
      "{method=none,reason=missing_credentials} 1",
    ]);
    expect(series(text, "api_key_server_rate_limit_refusals_total")).toEqual(["{kind=requests} 1"]);
    expect(series(text, "api_key_server_rate_limiter_source")).toEqual([
      "{source=fallback} 0",
      "{source=memory} 1",
      "{source=redis} 0",
    ]);
    expect(value(text, "api_key_server_in_flight_requests")).toBe(0);
    expect(value(text, "api_key_server_open_streams")).toBe(0);
    expect(await promtoolCheck(text)).toEqual({ code: 0, output: "" });
  });
});

describe("bounded labels", () => {
  it("10,000 requests naming 10,000 different unknown products add no series", async () => {
    const names = Array.from(
      { length: 10_000 },
      (_, i) => `flood-${i}-${Math.random().toString(36).slice(2)}`,
    );
    const sendAll = async (batch: readonly string[]) => {
      // 32 at a time, as a busy client would.
      for (let i = 0; i < batch.length; i += 32) {
        const outcomes = await Promise.all(
          batch.slice(i, i + 32).map((name) => clients.chat("rest", name, echo, { authorization: auth })),
        );
        for (const outcome of outcomes) expect(outcome.status).toBe(404);
      }
    };
    const labelSets = (text: string) =>
      text
        .split("\n")
        .filter((line) => line.startsWith("api_key_server_"))
        .map((line) => line.slice(0, line.lastIndexOf(" ")))
        .sort();
    const [first, ...rest] = names;
    await sendAll([first ?? ""]);
    const before = await scrapeUntil(settled);
    await sendAll(rest);
    const after = await scrapeUntil(settled);
    expect(labelSets(after)).toEqual(labelSets(before));
    expect(after).not.toContain("flood-");
    const unknown = {
      rpc: chat,
      protocol: "rest",
      product: "unknown",
      model: "",
      status: "404",
      code: "NOT_FOUND",
    };
    expect(
      (value(after, "api_key_server_requests_total", unknown) ?? 0) -
        (value(before, "api_key_server_requests_total", unknown) ?? 0),
    ).toBe(9_999);
    // 10,000 real requests: seconds alone, longer when the suite's other files share the two cores.
  }, 120_000);
});
