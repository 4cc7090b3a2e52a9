import { Code, ConnectError } from "@connectrpc/connect";
import { Agent } from "undici";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AppError } from "../../src/errors/index.js";
import { createForwarder, type Forwarder } from "../../src/upstream/index.js";
import { captureLog } from "../support/log-capture.js";
import { behaviors, startMockProvider, type MockProvider } from "../support/mock-provider.js";
import { canaryKey, failure, fixture, openAiProvider, plainRequest } from "./helpers.js";

let mock: MockProvider;
let forwarder: Forwarder;
const log = captureLog();

beforeAll(async () => {
  mock = await startMockProvider();
  forwarder = createForwarder({ timeoutMs: 10_000, logger: log.logger });
});

afterAll(async () => {
  await forwarder.close();
  await mock.close();
});

describe("wire format", () => {
  it.each([
    "chat-completion-plain.json",
    "chat-completion-tool-calls.json",
    "chat-completion-refusal.json",
    "chat-completion-logprobs.json",
    "chat-completion-n2.json",
  ])("passes %s on field for field, with its nulls and zeros", async (name) => {
    const answer = fixture(name);
    mock.setBehavior(behaviors.json(200, answer));
    const result = await forwarder.complete(openAiProvider(mock.url), plainRequest);
    expect(result.body).toStrictEqual(answer);
    expect(result.status).toBe(200);
    const usage = answer["usage"] as {
      prompt_tokens: number;
      completion_tokens: number;
      total_tokens: number;
    };
    // The fixtures report every detail as 0 (cached, audio, reasoning): known zeros, kept as such.
    expect(result.usage).toStrictEqual({
      promptTokens: usage.prompt_tokens,
      completionTokens: usage.completion_tokens,
      totalTokens: usage.total_tokens,
      cachedInputTokens: 0,
      audioInputTokens: 0,
      reasoningTokens: 0,
      audioOutputTokens: 0,
    });
    expect(result.upstreamLatencyMs).toBeGreaterThanOrEqual(0);
  });

  it("reports no usage when the provider sends none", async () => {
    const { usage: _usage, ...answer } = fixture("chat-completion-plain.json");
    mock.setBehavior(behaviors.json(200, answer));
    const result = await forwarder.complete(openAiProvider(mock.url), plainRequest);
    expect(result.usage).toBeUndefined();
  });

  it("sends the body exactly as given, to {base_url}/chat/completions with the bearer key", async () => {
    mock.setBehavior(behaviors.json(200, fixture("chat-completion-tool-calls.json")));
    const request = fixture("request-tools.json");
    const before = mock.requests.length;
    await forwarder.complete(openAiProvider(mock.url), request, { maxTokensCap: 8192 });
    const received = mock.requests[before];
    expect(received?.method).toBe("POST");
    expect(received?.path).toBe("/v1/chat/completions");
    expect(received?.headers["authorization"]).toBe(`Bearer ${canaryKey}`);
    expect(received?.headers["content-type"]).toBe("application/json");
    // The caller set max_tokens, so the cap is not added.
    expect(received?.body).toStrictEqual(request);
  });

  it.each([
    ["openai", "max_completion_tokens"],
    ["openai-compatible", "max_tokens"],
  ] as const)("%s: puts the cap in %s only when the caller set no limit", async (kind, field) => {
    mock.setBehavior(behaviors.json(200, fixture("chat-completion-plain.json")));
    const provider = openAiProvider(mock.url, { kind });
    const before = mock.requests.length;
    await forwarder.complete(provider, plainRequest, { maxTokensCap: 512 });
    await forwarder.complete(
      provider,
      { ...plainRequest, max_completion_tokens: 100 },
      { maxTokensCap: 512 },
    );
    await forwarder.complete(provider, { ...plainRequest, max_tokens: 100 }, { maxTokensCap: 512 });
    await forwarder.complete(provider, plainRequest, {});
    expect(mock.requests.slice(before).map((r) => r.body)).toStrictEqual([
      { ...plainRequest, [field]: 512 },
      { ...plainRequest, max_completion_tokens: 100 },
      { ...plainRequest, max_tokens: 100 },
      plainRequest,
    ]);
  });

  it("openai-compatible hosts may have no key: no authorization header is sent", async () => {
    mock.setBehavior(behaviors.json(200, fixture("chat-completion-plain.json")));
    const before = mock.requests.length;
    await forwarder.complete(
      openAiProvider(mock.url, { kind: "openai-compatible", apiKeys: [] }),
      plainRequest,
    );
    expect(mock.requests[before]?.headers["authorization"]).toBeUndefined();
  });

  it("honours a base_url with a path prefix and a trailing slash", async () => {
    mock.setBehavior(behaviors.json(200, fixture("chat-completion-plain.json")));
    const before = mock.requests.length;
    await forwarder.complete(
      openAiProvider(mock.url, { baseUrl: `${mock.url}/proxy/openai/v1/` }),
      plainRequest,
    );
    expect(mock.requests[before]?.path).toBe("/proxy/openai/v1/chat/completions");
  });
});

describe("connection pooling", () => {
  it("reuses one keep-alive connection for sequential calls", async () => {
    const own = await startMockProvider();
    const pooled = createForwarder({ timeoutMs: 10_000, logger: log.logger });
    try {
      for (let i = 0; i < 10; i++) {
        await pooled.complete(openAiProvider(own.url), plainRequest);
        // undici marks a socket idle one macrotask after the body ends; a call started in that gap would
        // open a second socket. Real callers never start in that gap, so step past it like they do.
        await new Promise((resolve) => setImmediate(resolve));
      }
      expect(own.requests).toHaveLength(10);
      expect(own.connectionsSeen).toBe(1);
    } finally {
      await pooled.close();
      await own.close();
    }
  });
});

describe("injected dispatcher", () => {
  it("sends every call through it and leaves it open on close()", async () => {
    const agent = new Agent();
    let dispatched = 0;
    const counting = agent.compose((dispatch) => (opts, handler) => {
      dispatched++;
      return dispatch(opts, handler);
    });
    const injected = createForwarder({ timeoutMs: 10_000, logger: log.logger, dispatcher: counting });
    try {
      mock.setBehavior(behaviors.json(200, fixture("chat-completion-plain.json")));
      await injected.complete(openAiProvider(mock.url), plainRequest);
      expect(dispatched).toBe(1);
      await injected.close();
      // Still usable: the forwarder does not own it.
      await injected.complete(openAiProvider(mock.url), plainRequest);
      expect(dispatched).toBe(2);
    } finally {
      await agent.close();
    }
  });
});

describe("timeouts and cancellation", () => {
  it("undici's own headers timeout counts as an upstream timeout", async () => {
    const agent = new Agent({ headersTimeout: 100 });
    const impatient = createForwarder({ timeoutMs: 10_000, logger: log.logger, dispatcher: agent });
    try {
      mock.setBehavior(behaviors.delay(30_000, behaviors.json(200, {})));
      const err = await failure(impatient.complete(openAiProvider(mock.url), plainRequest));
      expect((err as AppError).code).toBe("upstream_timeout");
      const line = log.records().findLast((r) => r["message"] === "Upstream call failed");
      expect(String(line?.["detail"])).toContain("UND_ERR_HEADERS_TIMEOUT");
    } finally {
      await agent.close();
    }
  });

  it("our timeout gives upstream_timeout (504) and aborts the provider request", async () => {
    const short = createForwarder({ timeoutMs: 200, logger: log.logger });
    try {
      mock.setBehavior(behaviors.delay(30_000, behaviors.json(200, {})));
      const abortedBefore = mock.aborted;
      const err = await failure(short.complete(openAiProvider(mock.url), plainRequest));
      expect(err).toBeInstanceOf(AppError);
      expect((err as AppError).code).toBe("upstream_timeout");
      expect((err as AppError).message).toBe("Upstream timeout");
      await mock.whenAborted(abortedBefore + 1);
    } finally {
      await short.close();
    }
  });

  it("a stall in the middle of the body is a timeout too", async () => {
    const short = createForwarder({ timeoutMs: 200, logger: log.logger });
    try {
      mock.setBehavior(behaviors.stall());
      const err = await failure(short.complete(openAiProvider(mock.url), plainRequest));
      expect((err as AppError).code).toBe("upstream_timeout");
    } finally {
      await short.close();
    }
  });

  it("the caller's deadline applies when it is sooner than our timeout", async () => {
    mock.setBehavior(behaviors.delay(30_000, behaviors.json(200, {})));
    const err = await failure(
      forwarder.complete(openAiProvider(mock.url), plainRequest, { deadlineMs: Date.now() + 200 }),
    );
    expect((err as AppError).code).toBe("upstream_timeout");
  });

  it("a deadline already passed fails without calling the provider", async () => {
    const before = mock.requests.length;
    const err = await failure(
      forwarder.complete(openAiProvider(mock.url), plainRequest, { deadlineMs: Date.now() - 1 }),
    );
    expect((err as AppError).code).toBe("upstream_timeout");
    expect(mock.requests.length).toBe(before);
  });

  it("the caller going away aborts the provider request and is reported as Canceled", async () => {
    mock.setBehavior(behaviors.delay(30_000, behaviors.json(200, {})));
    const controller = new AbortController();
    const { requests, aborted } = { requests: mock.requests.length, aborted: mock.aborted };
    const pending = failure(
      forwarder.complete(openAiProvider(mock.url), plainRequest, { signal: controller.signal }),
    );
    await mock.whenRequested(requests + 1);
    controller.abort();
    const err = await pending;
    expect(err).toBeInstanceOf(ConnectError);
    expect((err as ConnectError).code).toBe(Code.Canceled);
    await mock.whenAborted(aborted + 1);
  });

  it("a caller whose Connect deadline fired gets upstream_timeout", async () => {
    mock.setBehavior(behaviors.delay(30_000, behaviors.json(200, {})));
    const controller = new AbortController();
    const requests = mock.requests.length;
    const pending = failure(
      forwarder.complete(openAiProvider(mock.url), plainRequest, { signal: controller.signal }),
    );
    await mock.whenRequested(requests + 1);
    controller.abort(new ConnectError("the operation timed out", Code.DeadlineExceeded));
    expect(((await pending) as AppError).code).toBe("upstream_timeout");
  });

  it("an already aborted caller signal never reaches the provider", async () => {
    const before = mock.requests.length;
    const err = await failure(
      forwarder.complete(openAiProvider(mock.url), plainRequest, { signal: AbortSignal.abort() }),
    );
    expect((err as ConnectError).code).toBe(Code.Canceled);
    expect(mock.requests.length).toBe(before);
  });
});

describe("createForwarder options", () => {
  it.each([
    [{ timeoutMs: 0 }, /timeoutMs/],
    [{ timeoutMs: Number.NaN }, /timeoutMs/],
    [{ timeoutMs: 1000, maxResponseBytes: 0 }, /maxResponseBytes/],
    [{ timeoutMs: 1000, maxResponseBytes: 1.5 }, /maxResponseBytes/],
  ])("rejects %o", (options, message) => {
    expect(() => createForwarder({ ...options, logger: log.logger })).toThrow(message);
  });
});
