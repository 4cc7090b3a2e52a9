import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AppError } from "../../src/errors/index.js";
import {
  createForwarder,
  type Forwarder,
  type JsonObject,
  type TokenUsage,
} from "../../src/upstream/index.js";
import { captureLog } from "../support/log-capture.js";
import { behaviors, startMockProvider, type Behavior, type MockProvider } from "../support/mock-provider.js";
import { canaryPieces, collect, failure } from "./helpers.js";
import {
  providerFixture,
  wires,
  type ErrorFixtures,
  type StreamFixture,
  type UnaryFixture,
} from "./provider-fixtures.js";

// Anthropic, Gemini and Azure OpenAI through the forwarder against a mock speaking each provider's wire
// format: the fixtures (test/fixtures/<provider>/) hold our request, the request the provider must receive,
// its documented answer and the OpenAI-shaped answer the caller must get.

/** The fixture request's model. */
function modelOf(request: Record<string, unknown>): string {
  return typeof request["model"] === "string" ? request["model"] : "";
}

const now = 1_750_000_000_000;
let mock: MockProvider;
let forwarder: Forwarder;
const log = captureLog();

beforeAll(async () => {
  mock = await startMockProvider();
  forwarder = createForwarder({
    timeoutMs: 5000,
    maxResponseBytes: 64 * 1024,
    logger: log.logger,
    clock: { now: () => now },
  });
});

afterAll(async () => {
  await forwarder.close();
  await mock.close();
  const text = log.text();
  for (const piece of canaryPieces) expect(text).not.toContain(piece);
});

const kinds = Object.keys(wires) as (keyof typeof wires)[];

describe.each(kinds)("%s", (kind) => {
  const wire = wires[kind];

  it.each(wire.unary)(
    "unary %s: the provider gets the expected request; we answer the expected completion",
    async (name) => {
      const f = providerFixture<UnaryFixture>(kind, name);
      mock.setBehavior(behaviors.json(200, f.provider_response));
      const before = mock.requests.length;
      const result = await forwarder.complete(wire.config(mock.url), f.openai_request, {
        maxTokensCap: f.max_tokens_cap,
      });
      const received = mock.requests[before];
      expect(received?.path).toBe(wire.path(modelOf(f.openai_request), false));
      expect(received?.headers).toMatchObject(wire.headers(wire.config(mock.url).apiKeys[0] ?? ""));
      expect(received?.body).toStrictEqual(f.provider_request);
      expect(result.body).toStrictEqual(f.openai_response);
      expect(result.usage).toStrictEqual(f.token_usage);
    },
  );

  it.each(wire.streams)("stream %s: the events come back as the expected chunks", async (name) => {
    const f = providerFixture<StreamFixture>(kind, name);
    mock.setBehavior(wire.stream(f.provider_events));
    const before = mock.requests.length;
    const usage: TokenUsage[] = [];
    const result = await collect(
      forwarder.stream(wire.config(mock.url), f.openai_request, {
        maxTokensCap: f.max_tokens_cap,
        onUsage: (u) => usage.push(u),
      }),
    );
    expect(result.error).toBeUndefined();
    // The provider's usage reaches the core whether or not the caller asked for a usage chunk: last the
    // final counts, before them only partial readings, marked estimated.
    expect(usage.at(-1)).toStrictEqual(f.token_usage);
    for (const partial of usage.slice(0, -1)) expect(partial.estimated).toBe(true);
    const received = mock.requests[before];
    expect(received?.path).toBe(wire.path(modelOf(f.openai_request), true));
    expect(received?.headers["accept"]).toBe("text/event-stream");
    expect(received?.body).toStrictEqual(f.provider_request);
    expect(result.chunks).toStrictEqual(f.openai_chunks);
  });

  const errors = providerFixture<ErrorFixtures>(kind, "errors.json");

  it.each(errors.cases)("error $name → $code", async (c) => {
    mock.setBehavior(behaviors.json(c.status, c.body, c.headers));
    // A fresh provider object each time: a 429 rests the key of the one it was sent with.
    const err = await failure(
      forwarder.complete(wire.config(mock.url), {
        model: wire.model,
        messages: [{ role: "user", content: "Hi" }],
      }),
    );
    expect(err).toBeInstanceOf(AppError);
    expect((err as AppError).code).toBe(c.code);
    expect((err as AppError).message).toBe(c.message);
    if (c.retry_after_ms !== undefined) expect((err as AppError).retryAfterMs).toBe(c.retry_after_ms);
  });

  const streamFixture = providerFixture<StreamFixture>(kind, wire.streams[0] ?? "");
  const events = streamFixture.provider_events;
  const request = streamFixture.openai_request;

  it.each<[string, Behavior, string]>([
    ["a stream cut before the provider's end", wire.truncated(events), "ended before"],
    [
      "an in-stream error event",
      wire.stream([...events.slice(0, 1), errors.stream_error_event]),
      "error event",
    ],
    ["an event with invalid JSON", behaviors.sseFrames(["data: {not json\n\n"]), "invalid JSON"],
    ["an HTML error page (502)", behaviors.html(502), "HTTP 502"],
    ["an HTML page with 200 instead of events", behaviors.html(200), "expected an event stream"],
    ["a reset before any event", behaviors.reset(), "transport error"],
  ])("stream: %s is a terminal upstream_error (502)", async (_name, behavior, detail) => {
    mock.setBehavior(behavior);
    const result = await collect(forwarder.stream(wire.config(mock.url), request));
    expect(result.error).toBeInstanceOf(AppError);
    expect((result.error as AppError).code).toBe("upstream_error");
    const line = log.records().findLast((r) => r["message"] === "Upstream call failed");
    expect(String(line?.["detail"])).toContain(detail);
  });

  it.each<[string, Behavior, string]>([
    ["invalid JSON", behaviors.invalidJson(), "invalid JSON"],
    ["an HTML error page", behaviors.html(502), "HTTP 502"],
    ["an HTML page with 200", behaviors.html(200), "invalid JSON"],
  ])("unary: %s is upstream_error (502)", async (_name, behavior, detail) => {
    mock.setBehavior(behavior);
    const err = await failure(forwarder.complete(wire.config(mock.url), request));
    expect((err as AppError).code).toBe("upstream_error");
    const line = log.records().findLast((r) => r["message"] === "Upstream call failed");
    expect(String(line?.["detail"])).toContain(detail);
  });
});

describe("request features a provider cannot honour answer 400 naming the field, and nothing is sent", () => {
  const user = { role: "user", content: "Hi" };
  it.each<[keyof typeof wires, JsonObject, string]>([
    ["anthropic", { logprobs: true }, 'logprobs: not supported by provider kind "anthropic"'],
    ["anthropic", { n: 2 }, 'n: not supported by provider kind "anthropic"'],
    ["anthropic", { seed: 1 }, 'seed: not supported by provider kind "anthropic"'],
    [
      "anthropic",
      { response_format: { type: "json_object" } },
      'response_format: not supported by provider kind "anthropic"',
    ],
    [
      "anthropic",
      { messages: [{ role: "user", content: "Hi", name: "alice" }] },
      'messages[0].name: not supported by provider kind "anthropic"',
    ],
    [
      "anthropic",
      {
        messages: [
          { role: "user", content: [{ type: "input_audio", input_audio: { data: "", format: "wav" } }] },
        ],
      },
      'messages[0].content[0].type: content part "input_audio" is not supported by provider kind "anthropic"',
    ],
    [
      "anthropic",
      {
        messages: [
          user,
          {
            role: "assistant",
            content: null,
            tool_calls: [{ id: "c", type: "function", function: { name: "f", arguments: "{oops" } }],
          },
        ],
      },
      "messages[1].tool_calls[0].function.arguments: must be valid JSON",
    ],
    ["gemini", { user: "u-1" }, 'user: not supported by provider kind "gemini"'],
    ["gemini", { logit_bias: { "50256": -100 } }, 'logit_bias: not supported by provider kind "gemini"'],
    [
      "gemini",
      {
        messages: [
          { role: "user", content: [{ type: "image_url", image_url: { url: "https://example.com/a.png" } }] },
        ],
      },
      'messages[0].content[0].image_url.url: provider kind "gemini" takes images only as data: URLs',
    ],
    [
      "gemini",
      { messages: [user, { role: "tool", tool_call_id: "nope", content: "1" }] },
      "messages[1].tool_call_id: matches no tool call of an earlier assistant message",
    ],
  ])("%s %j → %s", async (kind, extra, message) => {
    const wire = wires[kind];
    const before = mock.requests.length;
    const body = { model: wire.model, messages: [user], ...extra };
    const err = await failure(forwarder.complete(wire.config(mock.url), body));
    expect((err as AppError).code).toBe("invalid_argument");
    expect((err as AppError).message).toBe(message);
    const streamed = await collect(forwarder.stream(wire.config(mock.url), body));
    expect((streamed.error as AppError).message).toBe(message);
    expect(mock.requests.length).toBe(before);
  });
});
