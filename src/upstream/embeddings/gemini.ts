import { perKey } from "../per-key.js";
import type { JsonObject } from "../types.js";
import type { AdapterDeps } from "../providers/adapter-deps.js";
import { geminiDefaultBaseUrl } from "../providers/gemini.js";
import {
  badAnswer,
  checkSupported,
  field,
  isObject,
  misconfigured,
  stringField,
} from "../providers/shared.js";
import type { EmbeddingAdapter } from "./types.js";
import { embeddingList, textInputs } from "./inputs.js";

const kind = "gemini";

/**
 * The Gemini API's batch embeddings (`POST {base_url}/models/{model}:batchEmbedContents`, the key in
 * `x-goog-api-key`): one request per input text, `dimensions` as `outputDimensionality`. Gemini reports no
 * token usage for embeddings, so the call is charged the server's estimate (src/chat/chat-core.ts, settle).
 * Token ids and `user` have no Gemini form: 400 naming the field. The vectors come back as numbers whatever
 * `encoding_format` asked; the embeddings service encodes them.
 */
export function createGeminiEmbeddings({ http, clock }: AdapterDeps): EmbeddingAdapter {
  const targetOf = perKey((provider, key) => {
    if (key === undefined) throw misconfigured(provider, "api_key is missing");
    const url = new URL((provider.baseUrl ?? geminiDefaultBaseUrl).replace(/\/+$/, ""));
    return {
      origin: url.origin,
      prefix: `${url.pathname.replace(/\/+$/, "")}/models/`,
      headers: Object.freeze({ "x-goog-api-key": key }),
    };
  });

  return {
    kind,
    async embed(call) {
      const { body } = call;
      checkSupported(body, kind, { model: true, input: true, dimensions: true, encoding_format: true });
      const model = stringField(body, "model") ?? "";
      const texts = textInputs(body, kind);
      const dimensions = body["dimensions"];
      const requests: JsonObject[] = texts.map((text) => ({
        model: `models/${model}`,
        content: { parts: [{ text }] },
        ...(typeof dimensions === "number" ? { outputDimensionality: dimensions } : {}),
      }));
      const { origin, prefix, headers } = targetOf(call);
      const started = clock.now();
      const { status, body: answer } = await http.postJson({
        provider: call.provider,
        origin,
        path: `${prefix}${encodeURIComponent(model)}:batchEmbedContents`,
        headers,
        body: { requests },
        signal: call.signal,
      });
      const embeddings = answer["embeddings"];
      if (!Array.isArray(embeddings) || embeddings.length !== texts.length) {
        throw badAnswer(call, "batchEmbedContents without one embedding per input");
      }
      const vectors = embeddings.map((e) => {
        const values = field(e, "values");
        if (!isObject(e) || !Array.isArray(values) || !values.every((v) => typeof v === "number")) {
          throw badAnswer(call, "an embedding without numeric values");
        }
        return values;
      });
      return {
        body: embeddingList(model, vectors, undefined),
        usage: undefined,
        upstreamLatencyMs: clock.now() - started,
        status,
      };
    },
  };
}
