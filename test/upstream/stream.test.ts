import { Code, ConnectError } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AppError } from "../../src/errors/index.js";
import { parseSse } from "../../src/upstream/sse.js";
import { createForwarder, type Forwarder, type JsonObject } from "../../src/upstream/index.js";
import { captureLog } from "../support/log-capture.js";
import type { TokenUsage } from "../../src/upstream/types.js";
import { behaviors, openAiChunks, startMockProvider, type MockProvider } from "../support/mock-provider.js";
import { collect, fixture, openAiProvider, plainRequest } from "./helpers.js";

let mock: MockProvider;
let forwarder: Forwarder;
const log = captureLog();
const chunks = fixture<JsonObject[]>("chat-completion-chunks.json");

beforeAll(async () => {
  mock = await startMockProvider();
  forwarder = createForwarder({ timeoutMs: 2000, maxResponseBytes: 64 * 1024, logger: log.logger });
});

afterAll(async () => {
  await forwarder.close();
  await mock.close();
});

describe("OpenAI SSE streaming", () => {
  it.each([false, true])(
    "yields every chunk as sent, ending at [DONE] (events split across writes: %s)",
    async (split) => {
      mock.setBehavior(behaviors.sse(chunks, "done", split));
      const before = mock.requests.length;
      const request = { ...plainRequest, stream_options: { include_usage: true } };
      const result = await collect(forwarder.stream(openAiProvider(mock.url), request, { maxTokensCap: 64 }));
      expect(result.error).toBeUndefined();
      expect(result.chunks).toStrictEqual(chunks);
      const received = mock.requests[before];
      expect(received?.body).toStrictEqual({ ...request, max_completion_tokens: 64, stream: true });
      expect(received?.headers["accept"]).toBe("text/event-stream");
    },
  );

  it("always asks the provider for usage; a caller that did not gets OpenAI's stream without it", async () => {
    mock.setBehavior(behaviors.openAiStream(chunks));
    const before = mock.requests.length;
    const seen: TokenUsage[] = [];
    const result = await collect(
      forwarder.stream(openAiProvider(mock.url), plainRequest, { onUsage: (u) => seen.push(u) }),
    );
    expect(result.error).toBeUndefined();
    const received = mock.requests[before];
    expect(received?.body).toStrictEqual({
      ...plainRequest,
      stream: true,
      stream_options: { include_usage: true },
    });
    // Exactly what OpenAI sends a caller that did not ask: no usage key, no usage-only chunk.
    expect(result.chunks).toStrictEqual(openAiChunks(chunks, false));
    expect(result.chunks.some((c) => "usage" in c)).toBe(false);
    expect(seen).toStrictEqual([
      {
        promptTokens: 9,
        completionTokens: 1,
        totalTokens: 10,
        cachedInputTokens: 0,
        audioInputTokens: 0,
        reasoningTokens: 0,
        audioOutputTokens: 0,
      },
    ]);
  });

  it.each([
    ["a stream cut before [DONE]", behaviors.sse(chunks.slice(0, 2), "truncate"), 2, "ended before [DONE]"],
    ["a reset mid-stream", behaviors.sse(chunks.slice(0, 2), "reset"), 2, "transport error"],
    ["an event with invalid JSON", behaviors.sse([chunks[0], "{not json"]), 1, "invalid JSON"],
    ["an event that is not an object", behaviors.sse([chunks[0], "[1,2]"]), 1, "not a JSON object"],
    [
      "an error event after the first chunk",
      behaviors.sse([chunks[0], { error: { message: "The server had an error", type: "server_error" } }]),
      1,
      "The server had an error",
    ],
    [
      "a 200 that is JSON, not an event stream",
      behaviors.json(200, fixture("chat-completion-plain.json")),
      0,
      "expected an event stream",
    ],
    ["an event larger than the cap", behaviors.sse([{ big: "x".repeat(100 * 1024) }]), 0, "larger than"],
    ["a 500 before the first event", behaviors.json(500, { error: { message: "boom" } }), 0, "HTTP 500"],
  ])("%s is upstream_error (502)", async (_name, behavior, delivered, detail) => {
    mock.setBehavior(behavior);
    const result = await collect(forwarder.stream(openAiProvider(mock.url), plainRequest));
    expect(result.chunks).toStrictEqual(openAiChunks(chunks.slice(0, delivered), false));
    expect(result.error).toBeInstanceOf(AppError);
    expect((result.error as AppError).code).toBe("upstream_error");
    const line = log.records().findLast((r) => r["message"] === "Upstream call failed");
    expect(String(line?.["detail"])).toContain(detail);
  });

  it.each([
    [400, "upstream_rejected", "Invalid 'stream_options'"],
    [429, "rate_limited", "Rate limit exceeded"],
  ] as const)("a %i before the first event is %s", async (status, code, message) => {
    mock.setBehavior(behaviors.json(status, { error: { message: "Invalid 'stream_options'" } }));
    const result = await collect(forwarder.stream(openAiProvider(mock.url), plainRequest));
    expect((result.error as AppError).code).toBe(code);
    expect((result.error as AppError).message).toBe(message);
  });

  it("a stream that stalls after its first chunk is cut by the idle timeout, and the provider sees the abort", async () => {
    const short = createForwarder({ timeoutMs: 10_000, streamIdleTimeoutMs: 200, logger: log.logger });
    try {
      mock.setBehavior(behaviors.sse(chunks.slice(0, 1), "stall"));
      const aborted = mock.aborted;
      const result = await collect(short.stream(openAiProvider(mock.url), plainRequest));
      expect(result.chunks).toStrictEqual(openAiChunks(chunks.slice(0, 1), false));
      expect((result.error as AppError).code).toBe("upstream_timeout");
      expect(
        String(log.records().findLast((r) => r["message"] === "Upstream call failed")?.["detail"]),
      ).toContain("no stream chunk within 200 ms");
      await mock.whenAborted(aborted + 1);
    } finally {
      await short.close();
    }
  });

  it("a stream still producing past the request timeout is not cut (issue 18, item 8)", async () => {
    // Each gap (40 ms) is far below the idle limit; the whole stream takes several request timeouts.
    const short = createForwarder({ timeoutMs: 100, streamIdleTimeoutMs: 5_000, logger: log.logger });
    try {
      const many = Array.from({ length: 12 }, () => chunks[1]);
      mock.setBehavior(behaviors.sse([chunks[0], ...many, ...chunks.slice(2)], "done", false, 40));
      const started = Date.now();
      const result = await collect(short.stream(openAiProvider(mock.url), plainRequest));
      expect(result.error).toBeUndefined();
      // Without include_usage the caller gets every chunk but the usage-only one.
      expect(result.chunks).toHaveLength(chunks.length - 2 + many.length);
      // The proof that the request timeout was passed, not a speed assertion.
      expect(Date.now() - started).toBeGreaterThan(100);
    } finally {
      await short.close();
    }
  });

  it("no first chunk within the request timeout is an upstream timeout", async () => {
    const short = createForwarder({ timeoutMs: 150, streamIdleTimeoutMs: 10_000, logger: log.logger });
    try {
      mock.setBehavior(behaviors.delay(5_000, behaviors.sse(chunks)));
      const result = await collect(short.stream(openAiProvider(mock.url), plainRequest));
      expect(result.chunks).toStrictEqual([]);
      expect((result.error as AppError).code).toBe("upstream_timeout");
      expect(
        String(log.records().findLast((r) => r["message"] === "Upstream call failed")?.["detail"]),
      ).toContain("no answer within 150 ms");
    } finally {
      await short.close();
    }
  });

  it("the caller's own deadline still bounds a stream that keeps producing", async () => {
    const short = createForwarder({ timeoutMs: 10_000, streamIdleTimeoutMs: 10_000, logger: log.logger });
    try {
      mock.setBehavior(
        behaviors.sse(
          Array.from({ length: 200 }, () => chunks[1]),
          "done",
          false,
          20,
        ),
      );
      const result = await collect(
        short.stream(openAiProvider(mock.url), plainRequest, { deadlineMs: Date.now() + 300 }),
      );
      expect(result.chunks.length).toBeGreaterThan(0);
      expect(result.chunks.length).toBeLessThan(200);
      expect((result.error as AppError).code).toBe("upstream_timeout");
    } finally {
      await short.close();
    }
  });

  it("the caller cancelling mid-stream aborts the provider stream and reports Canceled", async () => {
    mock.setBehavior(behaviors.sse(chunks.slice(0, 1), "stall"));
    const aborted = mock.aborted;
    const controller = new AbortController();
    const received: JsonObject[] = [];
    let error: unknown;
    try {
      for await (const chunk of forwarder.stream(openAiProvider(mock.url), plainRequest, {
        signal: controller.signal,
      })) {
        received.push(chunk);
        controller.abort();
      }
    } catch (err) {
      error = err;
    }
    expect(received).toStrictEqual(openAiChunks(chunks.slice(0, 1), false));
    expect(error).toBeInstanceOf(ConnectError);
    expect((error as ConnectError).code).toBe(Code.Canceled);
    await mock.whenAborted(aborted + 1);
  });

  it("a consumer that stops reading closes the provider stream", async () => {
    mock.setBehavior(behaviors.sse(chunks.slice(0, 1), "stall"));
    const aborted = mock.aborted;
    for await (const _chunk of forwarder.stream(openAiProvider(mock.url), plainRequest)) break;
    await mock.whenAborted(aborted + 1);
  });
});

describe("parseSse", () => {
  async function* bytes(...parts: (string | Uint8Array)[]) {
    await Promise.resolve();
    for (const p of parts) yield typeof p === "string" ? new TextEncoder().encode(p) : p;
  }
  async function events(...parts: (string | Uint8Array)[]) {
    const out: { event: string | undefined; data: string }[] = [];
    for await (const e of parseSse(bytes(...parts), 1024)) out.push({ ...e });
    return out;
  }

  it("handles CRLF, CR, comments, event names, multi-line data and a missing space", async () => {
    expect(
      await events(
        ": keep-alive\r\n\r\n",
        "event: message\r\ndata: a\r",
        "\ndata:b\r\n\r\n",
        "data: c\r\rdata: tail",
      ),
    ).toStrictEqual([
      { event: "message", data: "a\nb" },
      { event: undefined, data: "c" },
    ]);
  });

  it("joins a UTF-8 character split across chunks", async () => {
    const encoded = new TextEncoder().encode('data: {"t":"こんにちは"}\n\n');
    expect(await events(encoded.slice(0, 12), encoded.slice(12))).toStrictEqual([
      { event: undefined, data: '{"t":"こんにちは"}' },
    ]);
  });

  it("refuses an event that grows past the limit", async () => {
    await expect(events(`data: ${"x".repeat(2000)}`)).rejects.toThrow(/exceeded 1024 bytes/);
  });
});
