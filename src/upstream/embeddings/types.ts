import type { ProviderKind } from "../../secrets/types.js";
import type { AdapterDeps } from "../providers/adapter-deps.js";
import type { UpstreamCall, UpstreamResult } from "../types.js";

/**
 * Turns an OpenAI embeddings request (`{model, input, dimensions?, encoding_format?, user?}`, the body of
 * `UpstreamCall`) into one provider's wire format and its answer back into OpenAI's
 * `{"object": "list", "data": [{"object": "embedding", "index", "embedding"}], "model", "usage"}`.
 * `embedding` is a list of numbers, or a base64 string when the provider was asked for base64; the
 * embeddings service (src/services/embedding-service.ts) brings it into the caller's format. Throws only
 * AppError, like the chat adapters (src/upstream/types.ts).
 */
export interface EmbeddingAdapter {
  readonly kind: ProviderKind;
  embed(call: UpstreamCall): Promise<UpstreamResult>;
}

/** Builds a kind's embedding adapter; `null` in the registry: the kind has no embeddings. */
export type EmbeddingAdapterFactory = (deps: AdapterDeps) => EmbeddingAdapter;
