import { perKey } from "../per-key.js";
import type { ProviderConfig } from "../../secrets/types.js";
import { azureTarget } from "../providers/azure-openai.js";
import type { AdapterDeps } from "../providers/adapter-deps.js";
import { openAiDefaultBaseUrl } from "../providers/openai.js";
import { misconfigured } from "../providers/shared.js";
import type { EmbeddingAdapter } from "./types.js";
import { embeddingUsage } from "./inputs.js";

interface Target {
  readonly origin: string;
  readonly path: (model: string) => string;
  readonly headers: Readonly<Record<string, string>>;
}

/** `{base}/embeddings` with a bearer key (none for keyless compatible hosts). */
function bearerEmbeddings(base: string, key: string | undefined): Target {
  const url = new URL(`${base.replace(/\/+$/, "")}/embeddings`);
  const path = url.pathname;
  return {
    origin: url.origin,
    path: () => path,
    headers: Object.freeze(key === undefined ? {} : { authorization: `Bearer ${key}` }),
  };
}

const targets = {
  openai: (provider: ProviderConfig, key: string | undefined) => {
    if (key === undefined) throw misconfigured(provider, "api_key is missing");
    return bearerEmbeddings(provider.baseUrl ?? openAiDefaultBaseUrl, key);
  },
  "openai-compatible": (provider: ProviderConfig, key: string | undefined) => {
    if (provider.baseUrl === undefined) throw misconfigured(provider, "base_url is required");
    return bearerEmbeddings(provider.baseUrl, key);
  },
  "azure-openai": (provider: ProviderConfig, key: string | undefined): Target =>
    azureTarget(provider, key, "embeddings"),
} as const;

/** The kinds whose API documents `encoding_format: "base64"` (compatible hosts may not know it). */
const base64Kinds: ReadonlySet<string> = new Set(["openai", "azure-openai"]);

/**
 * OpenAI's embeddings endpoint (also Azure OpenAI's and OpenAI-compatible hosts', the same wire format at
 * other URLs, as the chat adapter in src/upstream/providers/openai.ts): the body is sent as given, except
 * that OpenAI and Azure OpenAI are always asked for base64 (a quarter of the bytes of float JSON; the
 * embeddings service gives the caller the format it asked), and the answer is returned field for field.
 */
export function createOpenAiEmbeddings(kind: keyof typeof targets): (deps: AdapterDeps) => EmbeddingAdapter {
  const askBase64 = base64Kinds.has(kind);
  return ({ http, clock }) => {
    const targetOf = perKey(targets[kind]);
    return {
      kind,
      async embed(call) {
        const { origin, path, headers } = targetOf(call);
        const model = typeof call.body["model"] === "string" ? call.body["model"] : "";
        const started = clock.now();
        const { status, body } = await http.postJson({
          provider: call.provider,
          origin,
          path: path(model),
          headers,
          body: askBase64 ? { ...call.body, encoding_format: "base64" } : call.body,
          signal: call.signal,
        });
        return {
          body,
          usage: embeddingUsage(body["usage"]),
          upstreamLatencyMs: clock.now() - started,
          status,
        };
      },
    };
  };
}
