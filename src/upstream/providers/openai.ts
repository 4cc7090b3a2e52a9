import type { HttpPost, UpstreamHttp } from "../http.js";
import { perKey } from "../per-key.js";
import type { ProviderConfig } from "../../secrets/types.js";
import type { Clock, JsonObject, ProviderAdapter, UpstreamCall } from "../types.js";
import { toTokenUsage } from "../usage.js";
import { includeUsage, isObject, parseEventJson, streamFailure } from "./shared.js";

/** OpenAI's public API; `base_url` replaces it (tests, proxies, OpenAI-compatible hosts). */
export const openAiDefaultBaseUrl = "https://api.openai.com/v1";

/** Where one provider key's calls go: the origin, the path for a model, and the auth headers. */
export interface OpenAiTarget {
  readonly origin: string;
  readonly path: (model: string) => string;
  readonly headers: Readonly<Record<string, string>>;
}

export interface OpenAiAdapterOptions {
  readonly kind: "openai" | "openai-compatible" | "azure-openai";
  /**
   * Where the token cap goes when the caller set none: OpenAI itself wants `max_completion_tokens` (its
   * `max_tokens` is deprecated and refused by reasoning models); most compatible hosts only know `max_tokens`.
   */
  readonly capField: "max_completion_tokens" | "max_tokens";
  /**
   * Works out the target of a provider and one of its keys (called once per provider object and key);
   * throws `misconfigured(...)` (./shared.ts) for a provider entry that cannot work.
   */
  readonly target: (provider: ProviderConfig, key: string | undefined) => OpenAiTarget;
}

/** The OpenAI target: `{base}/chat/completions` with a bearer key (none for keyless compatible hosts). */
export function bearerTarget(base: string, key: string | undefined): OpenAiTarget {
  const url = new URL(`${base.replace(/\/+$/, "")}/chat/completions`);
  const path = url.pathname;
  return {
    origin: url.origin,
    path: () => path,
    headers: Object.freeze(key === undefined ? {} : { authorization: `Bearer ${key}` }),
  };
}

/**
 * The OpenAI Chat Completions adapter (also Azure OpenAI and OpenAI-compatible hosts, which speak the same
 * wire format at other URLs). The request body is sent exactly as given, plus the cap field when the caller
 * set no limit; the answer is returned field for field. Streaming parses OpenAI's SSE (`data: {...}` events
 * ending with `data: [DONE]`).
 */
export function createOpenAiAdapter(
  deps: { readonly http: UpstreamHttp; readonly clock: Clock },
  options: OpenAiAdapterOptions,
): ProviderAdapter {
  const { http, clock } = deps;
  const targetOf = perKey(options.target);

  function post(call: UpstreamCall, body: JsonObject): HttpPost {
    const { origin, path, headers } = targetOf(call);
    const model = typeof call.body["model"] === "string" ? call.body["model"] : "";
    return { provider: call.provider, origin, path: path(model), headers, body, signal: call.signal };
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
      const callerWantsUsage = includeUsage(call.body);
      const body: JsonObject = { ...withCap(call), stream: true, stream_options: usageOptions(call.body) };
      let done = false;
      for await (const event of http.postEventStream(post(call, body))) {
        if (event.data.trim() === "[DONE]") {
          done = true;
          break;
        }
        const chunk = parseChunk(call, event.data);
        if (!("usage" in chunk)) {
          yield chunk;
          continue;
        }
        const usage = toTokenUsage(chunk["usage"]);
        if (usage !== undefined) call.onUsage?.(usage);
        if (callerWantsUsage) {
          yield chunk;
          continue;
        }
        // The caller did not ask for usage: it sees the stream OpenAI sends without include_usage, which
        // has neither the usage-only chunk nor the `"usage": null` on the others.
        const { usage: _usage, ...rest } = chunk;
        const choices = rest["choices"];
        if (Array.isArray(choices) && choices.length === 0) continue;
        yield rest;
      }
      if (!done) throw streamFailure(call, "event stream ended before [DONE]");
    },
  };
}

/**
 * The caller's `stream_options` with `include_usage: true`: the server always asks for the stream's usage
 * (it charges it), whatever the caller asked (docs/usage.md).
 */
function usageOptions(body: JsonObject): JsonObject {
  const options = body["stream_options"];
  return isObject(options) ? { ...options, include_usage: true } : { include_usage: true };
}

function parseChunk(call: UpstreamCall, data: string): JsonObject {
  const chunk = parseEventJson(call, data);
  // OpenAI reports failures after the 200 as an event carrying `error` instead of a chunk.
  if ("error" in chunk) throw streamFailure(call, `error event: ${JSON.stringify(chunk["error"])}`);
  return chunk;
}
