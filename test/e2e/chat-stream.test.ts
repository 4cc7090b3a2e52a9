import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startApp, type AppHarness } from "../support/app-harness.js";
import {
  canaryKey,
  canaryPieces,
  createE2eClients,
  e2eProducts,
  parseSse,
  protocols,
  relayedChunks,
  type E2eClients,
  type StreamOutcome,
} from "../support/e2e-clients.js";
import { behaviors, startMockProvider, type Behavior, type MockProvider } from "../support/mock-provider.js";
import { fixture } from "../upstream/helpers.js";

// StreamChatCompletion end to end: REST `POST /v1/chat/{product}:stream` as Server-Sent Events, Connect and
// gRPC server streaming; the mock provider streams OpenAI's chunks or breaks off in the ways real ones do.

const chunks = fixture<Record<string, unknown>[]>("chat-completion-chunks.json");
/** The chunks as the server relays them over REST: OpenAI's, field for field (see relayedChunks). */
const relayedRest = relayedChunks(chunks);
/** Connect and gRPC messages rendered by the REST JSON writer, which knows nothing of the request: no `"usage": null`. */
const relayedMessages = relayedRest.map((chunk) => {
  const { usage, ...rest } = chunk;
  return usage === null ? rest : chunk;
});
const relayed = (protocol: (typeof protocols)[number]) =>
  protocol === "rest" ? relayedRest : relayedMessages;
const request = {
  model: "gpt-4o-mini",
  messages: [{ role: "user", content: "Hello" }],
  stream_options: { include_usage: true },
};
const upstreamError = { code: "UNAVAILABLE", message: "Upstream service error" } as const;
const restUpstreamErrorBody = {
  error: { code: 502, status: "UNAVAILABLE", message: "Upstream service error" },
  detail: "Upstream service error",
};

describe("StreamChatCompletion end to end over REST (SSE), Connect and gRPC", () => {
  let mock: MockProvider;
  let app: AppHarness;
  let clients: E2eClients;
  let auth: string;
  const seen: string[] = [];

  beforeAll(async () => {
    mock = await startMockProvider();
    app = await startApp({ products: e2eProducts(mock.url), env: { API_KEY_SERVER_MAX_TOKENS: "2048" } });
    clients = createE2eClients(app.url);
    auth = `Bearer ${await app.token()}`;
  });
  afterAll(async () => {
    clients.close();
    await app.close();
    await mock.close();
  });

  async function stream(
    protocol: (typeof protocols)[number],
    behavior: Behavior,
    body: Record<string, unknown> = request,
  ) {
    mock.setBehavior(behavior);
    const outcome = await clients.stream(protocol, "product-dev", body, { authorization: auth });
    seen.push(outcome.raw, JSON.stringify(outcome.headers));
    return outcome;
  }

  it.each(protocols.flatMap((protocol) => [false, true].map((split) => ({ protocol, split }))))(
    "$protocol: OpenAI's chunks arrive in order, field for field, usage last (split writes: $split)",
    async ({ protocol, split }) => {
      const before = mock.requests.length;
      const outcome = await stream(protocol, behaviors.sse(chunks, "done", split));
      expect(outcome.end).toEqual({ code: "OK", message: "" });
      expect(outcome.messages).toStrictEqual(relayed(protocol));
      if (protocol === "rest") {
        expect(outcome.status).toBe(200);
        expect(outcome.headers["content-type"]).toBe("text/event-stream; charset=utf-8");
        // OpenAI's framing exactly: one `data: {chunk}\n\n` per chunk, then `data: [DONE]\n\n`, nothing else.
        expect(outcome.done).toBe(true);
        expect(outcome.raw.endsWith("}\n\ndata: [DONE]\n\n")).toBe(true);
        expect(
          outcome.raw
            .split("\n\n")
            .slice(0, -1)
            .every((e) => /^data: [^\n]+$/.test(e)),
        ).toBe(true);
        expect(parseSse(outcome.raw).map((e) => e.event)).toEqual([...chunks, "done"].map(() => undefined));
      }
      // What the provider got: the caller's body, stream forced on, include_usage passed through, the cap added.
      expect(mock.requests.length).toBe(before + 1);
      expect(mock.requests.at(-1)?.body).toStrictEqual({
        ...request,
        stream: true,
        max_completion_tokens: 2048,
      });
      expect(mock.requests.at(-1)?.headers["authorization"]).toBe(`Bearer ${canaryKey}`);
    },
  );

  it.each(["connect", "grpc"] as const)(
    '%s: the first delta\'s `"refusal": null` is its refusal set to "", the later deltas leave it unset',
    async (protocol) => {
      // The fixture is OpenAI's stream: `"refusal": null` in the first delta only.
      expect(
        chunks.map((c) => (c["choices"] as { delta: object }[])[0]?.delta).map((d) => "refusal" in (d ?? {})),
      ).toStrictEqual(chunks.map((_c, i) => i === 0));
      const outcome = await stream(protocol, behaviors.sse(chunks));
      expect(outcome.end).toEqual({ code: "OK", message: "" });
      const deltas = (outcome.chunks ?? []).map((chunk) => chunk.choices[0]?.delta);
      expect(deltas).toHaveLength(chunks.length);
      const [first, ...later] = deltas;
      expect(first?.refusal).toBe("");
      expect(first !== undefined && Object.hasOwn(first, "refusal")).toBe(true);
      for (const delta of later) expect(delta?.refusal).toBeUndefined();
    },
  );

  const broken: readonly { name: string; behavior: Behavior; before: number }[] = [
    { name: "truncated (no [DONE])", behavior: behaviors.sse(chunks.slice(0, 2), "truncate"), before: 2 },
    { name: "connection reset mid-stream", behavior: behaviors.sse(chunks.slice(0, 2), "reset"), before: 2 },
    {
      name: "an event that is not JSON",
      behavior: behaviors.sse([chunks[0], "{not json", chunks[1]]),
      before: 1,
    },
    {
      name: "an error event quoting the key",
      behavior: behaviors.sse([
        chunks[0],
        { error: { message: `Incorrect API key provided: ${canaryKey}`, type: "invalid_request_error" } },
      ]),
      before: 1,
    },
    { name: "a chunk that is not a chunk", behavior: behaviors.sse([chunks[0], { choices: 7 }]), before: 1 },
  ];

  it.each(protocols.flatMap((protocol) => broken.map((b) => ({ protocol, ...b }))))(
    "$protocol: $name → the chunks before it, then a clean UNAVAILABLE Upstream service error",
    async ({ protocol, behavior, before }) => {
      const outcome = await stream(protocol, behavior);
      expect(outcome.messages).toStrictEqual(relayed(protocol).slice(0, before));
      expect({ code: outcome.end.code, message: outcome.end.message }).toEqual(upstreamError);
      if (protocol === "rest") {
        // A stream the server had to end never ends like a finished one: no [DONE] after the error event.
        expect(outcome.done).toBe(false);
        // The 200 and the first events are already sent: the failure is an `event: error` with the S7 body.
        expect(outcome.status).toBe(200);
        const events = parseSse(outcome.raw);
        expect(events.map((e) => e.event)).toEqual([
          ...chunks.slice(0, before).map(() => undefined),
          "error",
        ]);
        expect(JSON.parse(events.at(-1)?.data ?? "")).toStrictEqual(restUpstreamErrorBody);
      }
      for (const piece of canaryPieces) expect(outcome.raw).not.toContain(piece);
    },
  );

  const refused: readonly {
    name: string;
    behavior?: Behavior;
    body?: Record<string, unknown>;
    status: number;
    code: string;
    message: string;
    hint?: string;
  }[] = [
    {
      name: "model not supported",
      body: { ...request, model: "gpt-3.5-turbo" },
      status: 400,
      code: "INVALID_ARGUMENT",
      message: "Model not supported",
    },
    // S7 order: the model is checked first, then the stream flag, then the token cap.
    {
      name: "stream: false on the streaming RPC",
      body: { ...request, stream: false, max_tokens: 4096 },
      status: 400,
      code: "INVALID_ARGUMENT",
      message: "Streaming required",
      hint: "use CreateChatCompletion (REST: POST /v1/chat/product-dev)",
    },
    {
      name: "max_tokens over the cap",
      body: { ...request, max_tokens: 4096 },
      status: 400,
      code: "INVALID_ARGUMENT",
      message: "max_tokens exceeds the maximum of 2048 tokens",
    },
    {
      name: "provider 401 quoting the key",
      behavior: behaviors.json(401, { error: { message: `Incorrect API key provided: ${canaryKey}` } }),
      status: 502,
      ...upstreamError,
    },
    {
      name: "provider 500",
      behavior: behaviors.json(500, { error: { message: "boom" } }),
      status: 502,
      ...upstreamError,
    },
    {
      name: "provider 400",
      behavior: behaviors.json(400, {
        error: { message: `'stream_options' is only allowed when 'stream' is true; key ${canaryKey}` },
      }),
      status: 400,
      code: "INVALID_ARGUMENT",
      message: "'stream_options' is only allowed when 'stream' is true; key [REDACTED]",
    },
    {
      name: "provider 429",
      behavior: behaviors.json(429, { error: { message: "slow down" } }, { "retry-after": "3" }),
      status: 429,
      code: "RESOURCE_EXHAUSTED",
      message: "Rate limit exceeded",
    },
    { name: "provider reset before any event", behavior: behaviors.reset(), status: 502, ...upstreamError },
  ];

  it.each(protocols.flatMap((protocol) => refused.map((r) => ({ protocol, ...r }))))(
    "$protocol: $name before the first chunk → $code $message (REST: a plain $status, not a stream)",
    async ({ protocol, behavior, body, status, code, message, hint }) => {
      const outcome = await stream(
        protocol,
        behavior ?? behaviors.json(500, { error: "must not be called" }),
        body,
      );
      expect(outcome.messages).toEqual([]);
      expect({ code: outcome.end.code, message: outcome.end.message }).toEqual({ code, message });
      if (protocol === "rest") {
        expect(outcome.status).toBe(status);
        expect(outcome.headers["content-type"]).toBe("application/json");
        const error = { code: status, status: code, message };
        // A hint travels beside the exact message, in `error.details` (REST) or the ErrorInfo metadata.
        const details = [
          {
            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
            reason: "streaming_required",
            domain: "api-key-server",
            metadata: { hint, param: "stream" },
          },
        ];
        expect(outcome.end.body).toStrictEqual({
          error: hint === undefined ? error : { ...error, details },
          detail: message,
        });
      } else if (hint !== undefined) {
        expect(outcome.end.errorMetadata).toEqual({ hint, param: "stream" });
        if (status === 429) expect(outcome.headers["retry-after"]).toBe("3");
      }
      for (const piece of canaryPieces) expect(outcome.raw).not.toContain(piece);
    },
  );

  it.each(protocols)(
    "%s: the caller leaving mid-stream aborts the upstream stream (the provider sees it)",
    async (protocol) => {
      mock.setBehavior(behaviors.sse(chunks.slice(0, 2), "stall"));
      const abortedBefore = mock.aborted;
      const requested = mock.requests.length;
      const controller = new AbortController();
      const call = clients
        .stream(protocol, "product-dev", request, { authorization: auth, signal: controller.signal })
        .catch((err: unknown) => err);
      await mock.whenRequested(requested + 1);
      controller.abort();
      await mock.whenAborted(abortedBefore + 1);
      expect(mock.aborted).toBe(abortedBefore + 1);
      const outcome = (await call) as StreamOutcome | Error;
      if (protocol === "rest") expect(outcome).toBeInstanceOf(Error);
      else expect((outcome as StreamOutcome).end.code).toBe("CANCELLED");
    },
  );

  it.each(protocols)(
    "%s: a stalled stream past the caller's deadline ends with DEADLINE_EXCEEDED",
    async (protocol) => {
      mock.setBehavior(behaviors.sse(chunks.slice(0, 1), "stall"));
      const abortedBefore = mock.aborted;
      const outcome = await clients.stream(protocol, "product-dev", request, {
        authorization: auth,
        timeoutMs: 500,
      });
      seen.push(outcome.raw);
      expect(outcome.end.code).toBe("DEADLINE_EXCEEDED");
      if (protocol === "rest") {
        expect(outcome.messages).toStrictEqual(relayed(protocol).slice(0, 1));
        expect(outcome.done).toBe(false);
        expect(outcome.end.body).toStrictEqual({
          error: { code: 504, status: "DEADLINE_EXCEEDED", message: "Upstream timeout" },
          detail: "Upstream timeout",
        });
      }
      await mock.whenAborted(abortedBefore + 1);
    },
  );

  it.each(protocols)(
    "%s: the echo provider streams with include_usage: text, finish, then usage",
    async (protocol) => {
      const outcome = await clients.stream(
        protocol,
        "product-dev",
        {
          model: "echo-1",
          messages: [{ role: "user", content: "Hello there" }],
          stream_options: { include_usage: true },
        },
        { authorization: auth },
      );
      expect(outcome.end.code).toBe("OK");
      const all = outcome.messages as {
        object: string;
        choices: { delta: { content?: string }; finish_reason: string | null }[];
        usage: unknown;
      }[];
      expect(all.every((m) => m.object === "chat.completion.chunk")).toBe(true);
      expect(all.flatMap((m) => m.choices.map((c) => c.delta.content ?? "")).join("")).toBe("Hello there");
      expect(all.flatMap((m) => m.choices.map((c) => c.finish_reason)).filter((f) => f !== null)).toEqual([
        "stop",
      ]);
      expect(all.at(-1)?.choices).toEqual([]);
      const usage = all.at(-1)?.usage as {
        prompt_tokens: number;
        completion_tokens: number;
        total_tokens: number;
      };
      expect(usage.completion_tokens).toBeGreaterThan(0);
      expect(usage.total_tokens).toBe(usage.prompt_tokens + usage.completion_tokens);
      // Only the last chunk carries usage; over REST the others say `"usage": null`, as OpenAI's do.
      const before = protocol === "rest" ? null : undefined;
      expect(all.slice(0, -1).every((m) => m.usage === before)).toBe(true);
      if (protocol === "rest") expect(outcome.done).toBe(true);
    },
  );

  it("REST: without include_usage no chunk has a usage key, and `stream: true` is accepted", async () => {
    const outcome = await clients.stream(
      "rest",
      "product-dev",
      { model: "echo-1", messages: [{ role: "user", content: "Hi" }], stream: true },
      { authorization: auth },
    );
    seen.push(outcome.raw);
    expect(outcome.end.code).toBe("OK");
    expect(outcome.done).toBe(true);
    expect(outcome.messages.length).toBeGreaterThan(1);
    expect(outcome.messages.every((m) => !Object.hasOwn(m as object, "usage"))).toBe(true);
  });

  it("no stream output, header or log line ever contained the canary key or its first/last 4 characters", () => {
    expect(seen.length).toBeGreaterThan(30);
    for (const text of seen) for (const piece of canaryPieces) expect(text).not.toContain(piece);
    for (const piece of canaryPieces) expect(app.logs.text()).not.toContain(piece);
    expect(app.logs.text()).toContain("Upstream call failed");
  });
});
