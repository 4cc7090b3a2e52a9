import { createHash } from "node:crypto";
import type { AdapterDeps } from "../providers/adapter-deps.js";
import type { EmbeddingAdapter } from "./types.js";
import { invalid } from "../providers/shared.js";
import { embeddingList, readEmbeddingInputs } from "./inputs.js";

/** Dimensions of an echo vector when the request sets no `dimensions`. */
export const echoEmbeddingDimensions = 256;
/** The most dimensions an echo vector may have (real models stop at a few thousand). */
export const echoMaxEmbeddingDimensions = 4096;
const charsPerToken = 4;

/**
 * The built-in `echo` provider's embeddings (no network, no key): a deterministic unit vector per input,
 * made from SHA-256 of the input (text, or token ids), so equal inputs get equal vectors and different
 * ones different vectors — enough for local work on retrieval code, not for meaning. `dimensions` sets the
 * length (default 256, at most 4096); usage is estimated at about four characters per token (one per token id).
 */
export function createEchoEmbeddings(_deps: AdapterDeps): EmbeddingAdapter {
  return {
    kind: "echo",
    embed(call) {
      return Promise.resolve().then(() => {
        call.signal.throwIfAborted();
        const { body } = call;
        const inputs = readEmbeddingInputs(body["input"]);
        const dimensions =
          typeof body["dimensions"] === "number" ? body["dimensions"] : echoEmbeddingDimensions;
        // A caller's number sizes the answer: bounded, so one request cannot make the server build gigabytes.
        if (dimensions > echoMaxEmbeddingDimensions) {
          throw invalid("dimensions", `at most ${echoMaxEmbeddingDimensions} for provider kind "echo"`);
        }
        const keys =
          inputs.kind === "texts" ? inputs.texts : inputs.tokens.map((ids) => `tokens:${ids.join(",")}`);
        const prompt =
          inputs.kind === "texts"
            ? inputs.texts.reduce((sum, t) => sum + Math.ceil(t.length / charsPerToken), 0)
            : inputs.tokens.reduce((sum, ids) => sum + ids.length, 0);
        const model = typeof body["model"] === "string" ? body["model"] : "echo";
        return {
          body: embeddingList(
            model,
            keys.map((key) => vectorOf(key, dimensions)),
            { prompt_tokens: prompt, total_tokens: prompt },
          ),
          usage: { promptTokens: prompt, completionTokens: 0, totalTokens: prompt },
          upstreamLatencyMs: 0,
          status: 200,
        };
      });
    },
  };
}

/** A unit vector of `dimensions` numbers in [-1, 1] from SHA-256 blocks of the key (counter mode). */
export function vectorOf(key: string, dimensions: number): number[] {
  const values: number[] = [];
  for (let block = 0; values.length < dimensions; block++) {
    const digest = createHash("sha256").update(`${block}\u0000${key}`).digest();
    for (let i = 0; i + 2 <= digest.length && values.length < dimensions; i += 2) {
      values.push(digest.readUInt16LE(i) / 32767.5 - 1);
    }
  }
  const norm = Math.sqrt(values.reduce((sum, v) => sum + v * v, 0)) || 1;
  // Rounded to float32, the precision real providers answer in, so base64 and float answers agree.
  return values.map((v) => Math.fround(v / norm));
}
