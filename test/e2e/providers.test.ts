import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startApp, type AppHarness } from "../support/app-harness.js";
import { createE2eClients, parseSse, protocols, type E2eClients } from "../support/e2e-clients.js";
import { behaviors, startMockProvider, type Behavior, type MockProvider } from "../support/mock-provider.js";
import { fixture } from "../upstream/helpers.js";
import {
  providerFixture,
  wires,
  type StreamFixture,
  type UnaryFixture,
} from "../upstream/provider-fixtures.js";

// Issue 14 end to end: one product secret naming every provider kind (Anthropic and OpenAI with key pools,
// Gemini, Azure OpenAI with a deployment map, echo), the composed server, and the mock speaking each
// provider's wire format. Over REST, Connect and gRPC: the provider receives the fixture's request and the
// caller reads the fixture's answer; no key of any provider or pool appears in any answer, header or log.

/** The fixture request's model. */
function modelOf(request: Record<string, unknown>): string {
  return typeof request["model"] === "string" ? request["model"] : "";
}

const keysOf = {
  anthropic: ["sk-ant-api03-canaryA0-Jq3Wm8Rx2Lp5Tz", "sk-ant-api03-canaryA1-Vb7Nc4Hd9Kf1Gs"],
  gemini: ["AIzaSyCanaryG3m1n1Kq8Lw2Nx5Rt7Vb9Yz0"],
  "azure-openai": ["0f3c9a7e5b1d4c2a8e6f0b9d7c5a3e1f"],
  openai: ["sk-proj-canaryO0-Hx4Mv8Qz1Wn6Py", "sk-proj-canaryO1-Ld2Ks7Fb3Tj9Gc"],
} as const;
const allKeys: readonly string[] = Object.values(keysOf).flat();
/** Each key and its last six characters: none may be in any answer, header or log line. */
const pieces = allKeys.flatMap((k) => [k, k.slice(-6)]);

const products = (url: string) => ({
  "p-anthropic": {
    max_tokens: 1024,
    providers: { anthropic: { api_keys: keysOf.anthropic, base_url: url, models: ["claude-sonnet-4-5"] } },
  },
  "p-gemini": {
    max_tokens: 800,
    providers: {
      gemini: { api_key: keysOf.gemini[0], base_url: `${url}/v1beta`, models: ["gemini-2.5-flash"] },
    },
  },
  "p-azure-openai": {
    max_tokens: 1024,
    providers: {
      azure: {
        kind: "azure-openai",
        api_key: keysOf["azure-openai"][0],
        base_url: url,
        models: ["gpt-4o", "gpt-4o-mini"],
        deployments: { "gpt-4o": "prod-gpt4o" },
      },
    },
  },
  "p-all": {
    providers: {
      openai: { api_keys: keysOf.openai, base_url: `${url}/v1`, models: ["gpt-4.1"] },
      anthropic: { api_keys: keysOf.anthropic, base_url: url, models: ["claude-sonnet-4-5"] },
      gemini: { api_key: keysOf.gemini[0], base_url: `${url}/v1beta`, models: ["gemini-2.5-flash"] },
      azure: { kind: "azure-openai", api_key: keysOf["azure-openai"][0], base_url: url, models: ["gpt-4o"] },
      echo: { models: ["echo-1"] },
    },
  },
});

/**
 * What the typed contract relays: Azure's content-filter fields are not OpenAI's and are dropped; a chunk
 * delta's `"refusal": null` is kept (ChunkDelta.refusal is JSON_PRESENCE_NULL_WHEN_EMPTY).
 */
function relayed(json: unknown, parent = ""): unknown {
  if (Array.isArray(json)) return json.map((item) => relayed(item, parent));
  if (typeof json !== "object" || json === null) return json;
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(json)) {
    if (key === "prompt_filter_results" || key === "content_filter_results") continue;
    out[key] = relayed(value, key);
  }
  if (parent === "" && !("system_fingerprint" in out)) out["system_fingerprint"] = null;
  return out;
}

/**
 * The chunks as REST (and the OpenAI surface) write them: with `stream_options.include_usage`, OpenAI's
 * `"usage": null` on every chunk before the usage chunk (README, "Streams over REST"); Connect and gRPC
 * messages have no such key.
 */
function relayedChunks(f: StreamFixture, surface: (typeof protocols)[number] | "openai"): unknown {
  const chunks = relayed(f.openai_chunks) as Record<string, unknown>[];
  const includeUsage =
    (f.openai_request["stream_options"] as { include_usage?: boolean } | undefined)?.include_usage === true;
  if (!includeUsage || surface === "connect" || surface === "grpc") return chunks;
  return chunks.map((chunk) => ("usage" in chunk ? chunk : { ...chunk, usage: null }));
}

/** `created` is the server's clock for Anthropic and Gemini answers: compare everything else. */
function withoutCreated(json: unknown): unknown {
  if (Array.isArray(json)) return json.map(withoutCreated);
  if (typeof json !== "object" || json === null) return json;
  const { created: _created, ...rest } = json as Record<string, unknown>;
  return rest;
}

describe("every provider kind end to end (issue 14)", () => {
  let mock: MockProvider;
  let app: AppHarness;
  let clients: E2eClients;
  let auth: string;
  let token: string;
  const seen: string[] = [];

  beforeAll(async () => {
    mock = await startMockProvider();
    app = await startApp({ products: products(mock.url) });
    clients = createE2eClients(app.url);
    token = await app.token({ claims: { products: "*" } });
    auth = `Bearer ${token}`;
  });
  afterAll(async () => {
    clients.close();
    await app.close();
    await mock.close();
  });

  const kinds = Object.keys(wires) as (keyof typeof wires)[];
  const unaryCases = kinds.flatMap((kind) =>
    wires[kind].unary.flatMap((name) => protocols.map((protocol) => ({ kind, name, protocol }))),
  );

  it.each(unaryCases)(
    "$protocol → $kind $name: the provider request and our answer",
    async ({ kind, name, protocol }) => {
      const wire = wires[kind];
      const f = providerFixture<UnaryFixture>(kind, name);
      mock.setBehavior(behaviors.json(200, f.provider_response));
      const before = mock.requests.length;
      const outcome = await clients.chat(protocol, `p-${kind}`, f.openai_request, { authorization: auth });
      seen.push(outcome.raw, JSON.stringify(outcome.headers));
      expect(outcome.code).toBe("OK");
      expect(withoutCreated(outcome.body)).toStrictEqual(withoutCreated(relayed(f.openai_response)));
      expect(mock.requests.length).toBe(before + 1);
      const received = mock.requests[before];
      expect(received?.path).toBe(wire.path(modelOf(f.openai_request), false));
      expect(received?.body).toStrictEqual(f.provider_request);
      expect(keysOf[kind]).toContain(
        Object.values(received?.headers ?? {}).find((v) => allKeys.includes(String(v))),
      );
    },
  );

  const streamCases = kinds.flatMap((kind) =>
    wires[kind].streams.flatMap((name) => protocols.map((protocol) => ({ kind, name, protocol }))),
  );

  it.each(streamCases)(
    "$protocol → $kind $name: the provider's events arrive as our chunks",
    async ({ kind, name, protocol }) => {
      const wire = wires[kind];
      const f = providerFixture<StreamFixture>(kind, name);
      mock.setBehavior(wire.stream(f.provider_events));
      const before = mock.requests.length;
      const outcome = await clients.stream(protocol, `p-${kind}`, f.openai_request, { authorization: auth });
      seen.push(outcome.raw, JSON.stringify(outcome.headers));
      expect(outcome.end).toEqual({ code: "OK", message: "" });
      expect(withoutCreated(outcome.messages)).toStrictEqual(withoutCreated(relayedChunks(f, protocol)));
      expect(mock.requests[before]?.path).toBe(wire.path(modelOf(f.openai_request), true));
      expect(mock.requests[before]?.body).toStrictEqual(f.provider_request);
    },
  );

  const sdkCases = kinds.flatMap((kind) => [
    ...wires[kind].unary.map((name) => ({ kind, name, stream: false })),
    ...wires[kind].streams.map((name) => ({ kind, name, stream: true })),
  ]);

  it.each(sdkCases)(
    "openai SDK at /openai/p-$kind/v1 → $kind $name (stream: $stream): the same request upstream, the same answer",
    async ({ kind, name, stream }) => {
      const wire = wires[kind];
      const client = new OpenAI({ baseURL: `${app.url}/openai/p-${kind}/v1`, apiKey: token, maxRetries: 0 });
      const before = mock.requests.length;
      if (stream) {
        const f = providerFixture<StreamFixture>(kind, name);
        mock.setBehavior(wire.stream(f.provider_events));
        const chunks: unknown[] = [];
        const body = {
          ...f.openai_request,
          stream: true,
        } as unknown as OpenAI.ChatCompletionCreateParamsStreaming;
        for await (const chunk of await client.chat.completions.create(body)) chunks.push(chunk);
        seen.push(JSON.stringify(chunks));
        expect(withoutCreated(chunks)).toStrictEqual(withoutCreated(relayedChunks(f, "openai")));
        expect(mock.requests[before]?.path).toBe(wire.path(modelOf(f.openai_request), true));
        expect(mock.requests[before]?.body).toStrictEqual(f.provider_request);
      } else {
        const f = providerFixture<UnaryFixture>(kind, name);
        mock.setBehavior(behaviors.json(200, f.provider_response));
        const body = f.openai_request as unknown as OpenAI.ChatCompletionCreateParamsNonStreaming;
        const answer = await client.chat.completions.create(body);
        seen.push(JSON.stringify(answer));
        expect(withoutCreated(answer)).toStrictEqual(withoutCreated(relayed(f.openai_response)));
        expect(mock.requests[before]?.path).toBe(wire.path(modelOf(f.openai_request), false));
        expect(mock.requests[before]?.body).toStrictEqual(f.provider_request);
      }
    },
  );

  it.each(protocols)("%s: ListModels names each model's provider kind", async (protocol) => {
    const outcome = await clients.listModels(protocol, "p-all", { authorization: auth });
    const data = (outcome.body as { data: { id: string; owned_by: string }[] }).data;
    expect(data.map((m) => [m.id, m.owned_by])).toStrictEqual([
      ["gpt-4.1", "openai"],
      ["claude-sonnet-4-5", "anthropic"],
      ["gemini-2.5-flash", "gemini"],
      ["gpt-4o", "azure-openai"],
      ["echo-1", "echo"],
    ]);
  });

  it("a retry on another key is invisible: one answer, one access line with the second attempt's usage", async () => {
    const f = providerFixture<UnaryFixture>("anthropic", "text.json");
    let calls = 0;
    mock.setBehavior(
      behaviors.choose(() =>
        calls++ === 0
          ? behaviors.json(529, { type: "error", error: { type: "overloaded_error", message: "Overloaded" } })
          : behaviors.json(200, f.provider_response),
      ),
    );
    const lines = () =>
      app.logs.records().filter((r) => r["rpc"] === "apikeyserver.v1.ChatService/CreateChatCompletion");
    const before = lines().length;
    const requests = mock.requests.length;
    const outcome = await clients.chat("rest", "p-all", { ...f.openai_request }, { authorization: auth });
    seen.push(outcome.raw);
    expect(outcome.status).toBe(200);
    expect(withoutCreated(outcome.body)).toStrictEqual(
      withoutCreated({
        ...f.openai_response,
        usage: {
          prompt_tokens: 2095,
          completion_tokens: 503,
          total_tokens: 2598,
          prompt_tokens_details: { cached_tokens: 0 },
        },
      }),
    );
    expect(mock.requests.length - requests).toBe(2);
    const keysSent = mock.requests.slice(requests).map((r) => r.headers["x-api-key"]);
    expect(new Set(keysSent)).toStrictEqual(new Set(keysOf.anthropic));
    const added = lines().slice(before);
    expect(added).toHaveLength(1);
    expect(added[0]).toMatchObject({
      code: "OK",
      promptTokens: 2095,
      completionTokens: 503,
      totalTokens: 2598,
    });
  });

  const quoting: readonly {
    kind: keyof typeof keysOf;
    model: string;
    behavior: (key: string) => Behavior;
  }[] = [
    {
      kind: "anthropic",
      model: "claude-sonnet-4-5",
      behavior: (key) =>
        behaviors.json(400, {
          type: "error",
          error: { type: "invalid_request_error", message: `bad request for key ${key}` },
        }),
    },
    {
      kind: "gemini",
      model: "gemini-2.5-flash",
      behavior: (key) =>
        behaviors.json(400, {
          error: {
            code: 400,
            message: `API key ${key} is not valid for this request`,
            status: "INVALID_ARGUMENT",
          },
        }),
    },
    {
      kind: "azure-openai",
      model: "gpt-4o",
      behavior: (key) =>
        behaviors.json(401, { error: { code: "401", message: `Access denied for key ${key}` } }),
    },
    {
      kind: "openai",
      model: "gpt-4.1",
      behavior: (key) =>
        behaviors.json(422, {
          error: { message: `Key ${key} cannot do that`, type: "invalid_request_error" },
        }),
    },
  ];

  it.each(protocols.flatMap((protocol) => quoting.map((q) => ({ protocol, ...q }))))(
    "$protocol → $kind: a provider error quoting the key never shows it, for every key of the pool",
    async ({ protocol, kind, model, behavior }) => {
      for (const key of keysOf[kind]) {
        mock.setBehavior(behavior(key));
        const body = { model, messages: [{ role: "user", content: "Hi" }] };
        const unary = await clients.chat(protocol, "p-all", body, { authorization: auth });
        const streamed = await clients.stream(protocol, "p-all", body, { authorization: auth });
        seen.push(unary.raw, JSON.stringify(unary.headers), streamed.raw, JSON.stringify(streamed.headers));
        expect(unary.code).not.toBe("OK");
        expect(streamed.end.code).not.toBe("OK");
      }
    },
  );

  it("no key of any provider or pool was in any answer, header or log line, and every key was used", () => {
    const text = [...seen, app.logs.text()].join("\n");
    for (const piece of pieces) expect(text).not.toContain(piece);
    const sent = new Set(
      mock.requests
        .flatMap((r) => Object.values(r.headers).map(String))
        .map((v) => v.replace(/^Bearer /, "")),
    );
    for (const key of allKeys) expect(sent).toContain(key);
  });
});

describe("stream time limits end to end (issue 18, item 8)", () => {
  let mock: MockProvider;
  let app: AppHarness;
  let clients: E2eClients;
  let auth: string;
  const chunks = fixture<Record<string, unknown>[]>("chat-completion-chunks.json");

  beforeAll(async () => {
    mock = await startMockProvider();
    app = await startApp({
      products: {
        "product-dev": {
          providers: {
            openai: {
              api_key: "sk-timeouts-test-key-0000",
              base_url: `${mock.url}/v1`,
              models: ["gpt-4o-mini"],
            },
          },
        },
      },
      env: { API_KEY_SERVER_REQUEST_TIMEOUT_SECONDS: "1", API_KEY_SERVER_STREAM_IDLE_TIMEOUT_SECONDS: "2" },
    });
    clients = createE2eClients(app.url);
    auth = `Bearer ${await app.token()}`;
  });
  afterAll(async () => {
    clients.close();
    await app.close();
    await mock.close();
  });

  const body = { model: "gpt-4o-mini", messages: [{ role: "user", content: "Hello" }] };

  it.each(["rest", "grpc"] as const)(
    "%s: a stream still producing after the request timeout is relayed to its end",
    async (protocol) => {
      // 8 gaps of 250 ms: twice the 1 s request timeout in all, each gap far below the 2 s idle limit.
      const many = Array.from({ length: 8 }, () => chunks[1]);
      mock.setBehavior(behaviors.sse([chunks[0], ...many, ...chunks.slice(2)], "done", false, 250));
      const started = Date.now();
      const outcome = await clients.stream(protocol, "product-dev", body, { authorization: auth });
      expect(outcome.end).toEqual({ code: "OK", message: "" });
      // The caller asked no usage: every chunk but OpenAI's usage-only one (docs/usage.md).
      expect(outcome.messages).toHaveLength(chunks.length + many.length - 2);
      expect(Date.now() - started).toBeGreaterThan(1000);
    },
  );

  it.each(["rest", "grpc"] as const)(
    "%s: a stream that stalls is cut after the idle limit with a terminal error",
    async (protocol) => {
      mock.setBehavior(behaviors.sse(chunks.slice(0, 1), "stall"));
      const aborted = mock.aborted;
      const outcome = await clients.stream(protocol, "product-dev", body, { authorization: auth });
      expect(outcome.messages).toHaveLength(1);
      expect(outcome.end).toMatchObject({ code: "DEADLINE_EXCEEDED", message: "Upstream timeout" });
      if (protocol === "rest") {
        expect(parseSse(outcome.raw).map((e) => e.event)).toEqual([undefined, "error"]);
      }
      await mock.whenAborted(aborted + 1);
      const failed = app.logs.records().findLast((r) => r["message"] === "Upstream call failed");
      expect(String(failed?.["detail"])).toContain("no stream chunk within 2000 ms");
    },
  );
});
