import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AppError, httpStatusOf, toConnectError } from "../../src/errors/index.js";
import type { ProviderConfig, ProviderKind } from "../../src/secrets/types.js";
import { createForwarder, type Forwarder } from "../../src/upstream/index.js";
import { captureLog } from "../support/log-capture.js";
import { behaviors, startMockProvider, type Behavior, type MockProvider } from "../support/mock-provider.js";
import { canaryKey, canaryPieces, collect, failure, openAiProvider, plainRequest } from "./helpers.js";

const now = Date.parse("2026-01-01T00:00:00Z");
let mock: MockProvider;
let forwarder: Forwarder;
const log = captureLog();

beforeAll(async () => {
  mock = await startMockProvider();
  forwarder = createForwarder({
    timeoutMs: 300,
    maxResponseBytes: 64 * 1024,
    logger: log.logger,
    clock: { now: () => now },
  });
});

afterAll(async () => {
  await forwarder.close();
  await mock.close();
});

async function fail(behavior: Behavior, kind: ProviderKind = "openai"): Promise<AppError> {
  mock.setBehavior(behavior);
  const err = await failure(forwarder.complete(openAiProvider(mock.url, { kind }), plainRequest));
  expect(err).toBeInstanceOf(AppError);
  return err as AppError;
}

/** The last "Upstream call failed" line. */
function lastFailureLog(): Record<string, unknown> | undefined {
  return log.records().findLast((r) => r["message"] === "Upstream call failed");
}

const openAiError = (message: string, type = "invalid_request_error", code: string | null = null) => ({
  error: { message, type, param: null, code },
});

describe("provider statuses (SPEC S7)", () => {
  it.each([
    [400, "upstream_rejected", 400, "Invalid value for 'temperature': expected a number.", "WARNING"],
    [
      404,
      "upstream_rejected",
      400,
      "The model `gpt-5-turbo` does not exist or you do not have access to it.",
      "WARNING",
    ],
    [422, "upstream_rejected", 400, "Unprocessable request.", "WARNING"],
    [401, "upstream_error", 502, "Upstream service error", "ERROR"],
    [403, "upstream_error", 502, "Upstream service error", "ERROR"],
    [409, "upstream_error", 502, "Upstream service error", "ERROR"],
    [500, "upstream_error", 502, "Upstream service error", "ERROR"],
    [502, "upstream_error", 502, "Upstream service error", "ERROR"],
    [503, "upstream_error", 502, "Upstream service error", "ERROR"],
    [504, "upstream_error", 502, "Upstream service error", "ERROR"],
    [429, "rate_limited", 429, "Rate limit exceeded", "WARNING"],
  ] as const)(
    "provider %i → %s (HTTP %i) %j, logged at %s",
    async (status, code, http, message, severity) => {
      const err = await fail(behaviors.json(status, openAiError(message)));
      expect(err.code).toBe(code);
      expect(httpStatusOf(err.code)).toBe(http);
      expect(err.message).toBe(message);
      expect(lastFailureLog()).toMatchObject({
        severity,
        upstreamStatus: status,
        code,
        provider: "main-openai",
      });
    },
  );

  it("a 400 without a readable provider message gets the table's message", async () => {
    const err = await fail(behaviors.html(400));
    expect(err.code).toBe("upstream_rejected");
    expect(err.message).toBe("Upstream rejected the request");
  });

  it("logs the provider's text with the status, so an invalid key is visible to operators", async () => {
    await fail(
      behaviors.json(
        401,
        openAiError("Incorrect API key provided", "invalid_request_error", "invalid_api_key"),
      ),
    );
    const line = lastFailureLog();
    expect(line?.["severity"]).toBe("ERROR");
    expect(String(line?.["detail"])).toContain("HTTP 401");
    expect(String(line?.["detail"])).toContain("invalid_api_key");
  });
});

describe("429 passes the provider's retry delay on", () => {
  it.each([
    [{ "retry-after-ms": "1500" }, 1500],
    [{ "retry-after": "7" }, 7000],
    [{ "retry-after": new Date(now + 20_000).toUTCString() }, 20_000],
    [{ "x-ratelimit-reset-requests": "6m0s" }, 360_000],
    [{ "x-ratelimit-reset-tokens": "250ms" }, 250],
    [{ "retry-after-ms": "300", "retry-after": "9" }, 300],
    [{}, 1000],
    [{ "retry-after": "soon" }, 1000],
  ])("%o → %i ms", async (headers, ms) => {
    const err = await fail(behaviors.json(429, openAiError("Rate limit reached", "requests"), headers));
    expect(err.code).toBe("rate_limited");
    expect(err.retryAfterMs).toBe(ms);
  });
});

describe("misbehaving providers are 502 (or 504 when they stall)", () => {
  it.each([
    ["invalid JSON", behaviors.invalidJson(), "invalid JSON"],
    ["an HTML page with 200", behaviors.html(200), "text/html"],
    ["a JSON array instead of an object", behaviors.json(200, [1, 2]), "not an object"],
    ["a redirect (never followed)", behaviors.redirect("/elsewhere"), "HTTP 302"],
    ["an oversized body with Content-Length", behaviors.oversized(1024 * 1024, true), "larger than 65536"],
    ["an oversized chunked body", behaviors.oversized(1024 * 1024, false), "larger than 65536"],
    ["a connection reset before the answer", behaviors.reset(), "transport error"],
    ["a connection reset mid-body", behaviors.reset('{"id": "chatcmpl-1", "cho'), "transport error"],
  ])("%s", async (_name, behavior, detail) => {
    const before = mock.requests.length;
    const err = await fail(behavior);
    expect(err.code).toBe("upstream_error");
    expect(err.message).toBe("Upstream service error");
    expect(String(lastFailureLog()?.["detail"])).toContain(detail);
    expect(lastFailureLog()?.["severity"]).toBe("ERROR");
    // Exactly one request: no redirect followed, no retry.
    expect(mock.requests.length).toBe(before + 1);
  });

  it("a provider that stalls mid-body is an upstream timeout", async () => {
    const err = await fail(behaviors.stall());
    expect(err.code).toBe("upstream_timeout");
    expect(lastFailureLog()?.["severity"]).toBe("ERROR");
  });

  it("a refused connection is 502", async () => {
    const closed = await startMockProvider();
    const url = closed.url;
    await closed.close();
    const err = await failure(forwarder.complete(openAiProvider(url), plainRequest));
    expect((err as AppError).code).toBe("upstream_error");
    expect(String(lastFailureLog()?.["detail"])).toContain("ECONNREFUSED");
  });
});

describe("configuration faults are 502 with the reason logged", () => {
  it.each<[string, ProviderConfig, string]>([
    ["openai without api_key", openAiProvider("http://127.0.0.1:9", { apiKeys: [] }), "api_key is missing"],
    [
      "openai-compatible without base_url",
      openAiProvider("", { kind: "openai-compatible", baseUrl: undefined }),
      "base_url is required",
    ],
    [
      "azure-openai without base_url",
      openAiProvider("", { kind: "azure-openai", baseUrl: undefined }),
      "base_url is required",
    ],
    ...(["azure-openai", "anthropic", "gemini"] as const).map(
      (kind) =>
        [
          `${kind} without api_key`,
          openAiProvider("http://127.0.0.1:9", { kind, apiKeys: [] }),
          "api_key is missing",
        ] as [string, ProviderConfig, string],
    ),
  ])("%s", async (_name, provider, detail) => {
    const err = await failure(forwarder.complete(provider, plainRequest));
    expect((err as AppError).code).toBe("upstream_error");
    expect(String(lastFailureLog()?.["detail"])).toContain(detail);
  });
});

describe("no key ever leaks (SPEC S7)", () => {
  const quoting = `Incorrect API key provided: ${canaryKey.slice(0, 8)}************************${canaryKey.slice(-4)}.`;
  const leakyBehaviors: [string, Behavior][] = [
    [
      "401 quoting the masked key (OpenAI style)",
      behaviors.json(401, openAiError(quoting, "invalid_request_error", "invalid_api_key")),
    ],
    [
      "401 quoting the whole key",
      behaviors.json(401, openAiError(`Incorrect API key provided: ${canaryKey}.`)),
    ],
    ["400 quoting the whole key", behaviors.json(400, openAiError(`Bad request for key ${canaryKey}`))],
    ["404 whose message is the key", behaviors.json(404, { error: { message: canaryKey } })],
    ["422 quoting the key in plain text", behaviors.raw(422, `key=${canaryKey}`)],
    [
      "429 quoting the key",
      behaviors.json(429, openAiError(`Rate limit for ${canaryKey}`), { "retry-after": "1" }),
    ],
    ["500 quoting the key", behaviors.json(500, openAiError(`internal error for ${canaryKey}`))],
    ["HTML page quoting the key", behaviors.raw(200, `<html>${canaryKey}</html>`, "text/html")],
    ["invalid JSON quoting the key", behaviors.raw(200, `{"key": "${canaryKey}"`, "application/json")],
    ["a reset", behaviors.reset()],
    ["a stall", behaviors.stall()],
    ["a redirect", behaviors.redirect(`/?key=${canaryKey}`)],
    ["an oversized body", behaviors.oversized(1024 * 1024)],
    ["an SSE error event quoting the key", behaviors.sse([{ error: { message: `bad key ${canaryKey}` } }])],
    ["an SSE bad event quoting the key", behaviors.sse([`{${canaryKey}`])],
    ["an SSE stream that is cut", behaviors.sse([], "truncate")],
  ];

  it.each(leakyBehaviors)(
    "%s: neither the result nor the log contains the key or a piece of it",
    async (_name, behavior) => {
      mock.setBehavior(behavior);
      const linesBefore = log.lines.length;
      const provider = openAiProvider(mock.url);
      const unary = await failure(forwarder.complete(provider, plainRequest));
      const streamed = await collect(forwarder.stream(provider, plainRequest));
      const outputs: string[] = [...log.lines.slice(linesBefore)];
      for (const err of [unary, streamed.error]) {
        expect(err).toBeInstanceOf(AppError);
        const app = err as AppError;
        const wire = toConnectError(app);
        outputs.push(
          app.message,
          String(app.cause),
          JSON.stringify(app.headers ?? {}),
          wire.message,
          wire.rawMessage,
        );
        outputs.push(JSON.stringify([...wire.metadata]));
      }
      outputs.push(JSON.stringify(streamed.chunks));
      expect(log.lines.length).toBeGreaterThan(linesBefore);
      for (const text of outputs) {
        for (const piece of canaryPieces) expect(text).not.toContain(piece);
      }
    },
  );
});
