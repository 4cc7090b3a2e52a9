import { AppError } from "../../errors/index.js";
import { UpstreamFailure } from "../failure.js";
import type { HttpPost, UpstreamHttp } from "../http.js";
import type { ProviderConfig } from "../../secrets/types.js";
import type { Clock, JsonObject, ProviderAdapter, UpstreamCall } from "../types.js";
import { toTokenUsage } from "../usage.js";

/** OpenAI's public API; `base_url` replaces it (tests, proxies, OpenAI-compatible hosts). */
export const openAiDefaultBaseUrl = "https://api.openai.com/v1";

export interface OpenAiAdapterOptions {
  readonly kind: "openai" | "openai-compatible";
  /**
   * Where the token cap goes when the caller set none: OpenAI itself wants `max_completion_tokens` (its
   * `max_tokens` is deprecated and refused by reasoning models); most compatible hosts only know `max_tokens`.
   */
  readonly capField: "max_completion_tokens" | "max_tokens";
  /** Whether a provider without `base_url` may use OpenAI's public URL (false for openai-compatible). */
  readonly allowDefaultBaseUrl: boolean;
  /** Whether a provider without `api_key` is a configuration error (local hosts such as Ollama need none). */
  readonly requireApiKey: boolean;
}

/**
 * The OpenAI Chat Completions adapter (`POST {base}/chat/completions`, bearer key). The request body is sent
 * exactly as given, plus the cap field when the caller set no limit; the answer is returned field for field.
 * Streaming parses OpenAI's SSE (`data: {...}` events ending with `data: [DONE]`).
 */
export function createOpenAiAdapter(
  deps: { readonly http: UpstreamHttp; readonly clock: Clock },
  options: OpenAiAdapterOptions,
): ProviderAdapter {
  const { http, clock } = deps;

  /**
   * Where and how a provider is called, worked out once per provider object: a secrets refresh builds new
   * objects, so a rotated key or URL is picked up, and the old ones are collected with their snapshot.
   */
  const targets = new WeakMap<
    ProviderConfig,
    { origin: string; path: string; headers: Readonly<Record<string, string>> }
  >();

  function post(call: UpstreamCall, body: JsonObject): HttpPost {
    const { provider } = call;
    let target = targets.get(provider);
    if (target === undefined) {
      const base = provider.baseUrl ?? (options.allowDefaultBaseUrl ? openAiDefaultBaseUrl : undefined);
      if (base === undefined) throw misconfigured(call, "base_url is required");
      if (provider.apiKey === undefined && options.requireApiKey)
        throw misconfigured(call, "api_key is missing");
      const url = new URL(`${base.replace(/\/+$/, "")}/chat/completions`);
      target = {
        origin: url.origin,
        path: url.pathname,
        headers: Object.freeze(
          provider.apiKey === undefined ? {} : { authorization: `Bearer ${provider.apiKey}` },
        ),
      };
      targets.set(provider, target);
    }
    const { origin, path, headers } = target;
    return { provider, origin, path, headers, body, signal: call.signal };
  }

  function withCap(call: UpstreamCall): JsonObject {
    const { body, maxTokensCap } = call;
    if (maxTokensCap === undefined || body["max_tokens"] != null || body["max_completion_tokens"] != null) {
      return body;
    }
    return { ...body, [options.capField]: maxTokensCap };
  }

  return {
    kind: options.kind,

    async complete(call) {
      const started = clock.now();
      const { status, body } = await http.postJson(post(call, withCap(call)));
      return { body, usage: toTokenUsage(body["usage"]), upstreamLatencyMs: clock.now() - started, status };
    },

    async *stream(call) {
      let done = false;
      for await (const event of http.postEventStream(post(call, { ...withCap(call), stream: true }))) {
        if (event.data.trim() === "[DONE]") {
          done = true;
          break;
        }
        yield parseChunk(call, event.data);
      }
      if (!done) throw streamFailure(call, "event stream ended before [DONE]");
    },
  };
}

function parseChunk(call: UpstreamCall, data: string): JsonObject {
  let chunk: unknown;
  try {
    chunk = JSON.parse(data);
  } catch {
    throw streamFailure(call, "event with invalid JSON");
  }
  if (typeof chunk !== "object" || chunk === null || Array.isArray(chunk)) {
    throw streamFailure(call, "event that is not a JSON object");
  }
  // OpenAI reports failures after the 200 as an event carrying `error` instead of a chunk.
  if ("error" in chunk) throw streamFailure(call, `error event: ${JSON.stringify(chunk.error)}`);
  return chunk as JsonObject;
}

function streamFailure(call: UpstreamCall, detail: string): AppError {
  return new AppError("upstream_error", { cause: new UpstreamFailure(call.provider, detail) });
}

function misconfigured(call: UpstreamCall, detail: string): AppError {
  return new AppError("upstream_error", {
    cause: new UpstreamFailure(call.provider, `misconfigured: ${detail}`),
  });
}
