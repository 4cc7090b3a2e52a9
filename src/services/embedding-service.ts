import { create } from "@bufbuild/protobuf";
import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import type { EmbeddingService } from "../../gen/apikeyserver/v1/embeddings_pb.js";
import {
  CreateEmbeddingsRequestSchema,
  CreateEmbeddingsResponseSchema,
  EmbeddingSchema,
  type Embedding,
} from "../../gen/apikeyserver/v1/embeddings_pb.js";
import type { ChatCore } from "../chat/chat-core.js";
import type { JsonObject, TokenUsage, UpstreamCallOptions } from "../chat/ports.js";
import { accessRecordKey } from "../edge/access-record.js";
import { AppError } from "../errors/index.js";
import { compileJsonPlans, toRestJson } from "../json/index.js";
import type { ProviderConfig } from "../secrets/types.js";
import { readEmbeddingInputs, type EmbeddingInputs } from "../upstream/embeddings/inputs.js";
import { estimateTextsTokens } from "../usage/estimate.js";

/** What the embeddings service needs of the upstream forwarder (src/upstream/forwarder.ts). */
export interface EmbeddingUpstream {
  embeds(provider: ProviderConfig): boolean;
  embed(
    provider: ProviderConfig,
    body: JsonObject,
    options: UpstreamCallOptions & { readonly requestId: string | undefined },
  ): Promise<{
    readonly body: JsonObject;
    readonly usage?: TokenUsage | undefined;
    readonly upstreamLatencyMs: number;
  }>;
}

export interface EmbeddingServiceOptions {
  /** The chat core: its `admitCall` is the one enforcement point of products, models, limits and usage. */
  readonly core: ChatCore;
  readonly upstream: EmbeddingUpstream;
}

/** OpenAI's limit on the inputs of one embeddings request. */
export const maxEmbeddingInputs = 2048;
const encodingFormats: ReadonlySet<string> = new Set(["float", "base64"]);

/**
 * EmbeddingService (proto/apikeyserver/v1/embeddings.proto) on every protocol: gRPC, gRPC-Web, Connect, REST
 * `POST /v1/embeddings/{product}` and the OpenAI surface's `POST /openai/<product>/v1/embeddings`. The steps
 * are chat's (README, API): product → caller may use it → model (a kind without embeddings is 400 `Model
 * not supported`) → the input → rate limit (all through `ChatCore.admitCall`) → forward → usage, settled in
 * a `finally` (the provider's, or an estimate of the input where it reports none, as Gemini). The access
 * line says `surface: "embeddings"`. Vectors reach the caller as `encoding_format` asks, whatever the
 * provider answered: numbers, or base64 of little-endian float32 (what the `openai` SDK asks by default).
 */
export function createEmbeddingService(
  options: EmbeddingServiceOptions,
): ServiceImpl<typeof EmbeddingService> {
  const { core, upstream } = options;
  compileJsonPlans([CreateEmbeddingsRequestSchema, CreateEmbeddingsResponseSchema]);

  async function createEmbeddings(
    request: Parameters<ServiceImpl<typeof EmbeddingService>["createEmbeddings"]>[0],
    ctx: HandlerContext,
  ) {
    const record = ctx.values.get(accessRecordKey);
    if (record) record.surface = "embeddings";
    const { product: name, model } = request;
    const resolved = core.model(name, model, ctx);
    if (!upstream.embeds(resolved.provider)) throw new AppError("model_not_supported", { param: "model" });
    const { product: _product, ...body } = toRestJson(CreateEmbeddingsRequestSchema, request) as JsonObject;
    const inputs = checkRequest(body);
    const format = typeof body["encoding_format"] === "string" ? body["encoding_format"] : "float";
    // Counted at most once: for the budget's reservation and, with no provider usage, for the charge.
    let estimate: number | undefined;
    const promptTokens = () => (estimate ??= estimateInputs(inputs));

    const call = await core.admitCall(
      { product: name, model, maxOutputTokens: [], promptTokens },
      ctx,
      resolved,
    );
    let usage: TokenUsage | undefined;
    try {
      const result = await upstream.embed(call.provider, body, call.options);
      if (record) record.upstreamLatencyMs = result.upstreamLatencyMs;
      // A provider that reports no usage (Gemini) is charged, and shown, the estimate of the input.
      usage = result.usage ?? estimatedUsage(promptTokens());
      return toResponse(result.body, format, usage, call.provider);
    } finally {
      await call.settle(usage);
    }
  }

  return { createEmbeddings };
}

/** The caller's input, dimensions and encoding format checked (400 naming the field); the inputs read. */
function checkRequest(body: JsonObject): EmbeddingInputs {
  if (body["input"] === undefined || body["input"] === null) {
    throw new AppError("invalid_argument", { message: 'Missing required field "input"', param: "input" });
  }
  const inputs = readEmbeddingInputs(body["input"]);
  const count = inputs.kind === "texts" ? inputs.texts.length : inputs.tokens.length;
  if (count > maxEmbeddingInputs) {
    throw new AppError("invalid_argument", {
      message: `input: at most ${maxEmbeddingInputs} inputs per request`,
      param: "input",
    });
  }
  if (inputs.kind === "texts" && inputs.texts.some((t) => t === "")) {
    throw new AppError("invalid_argument", {
      message: "input: must not contain empty strings",
      param: "input",
    });
  }
  const dimensions = body["dimensions"];
  if (
    dimensions !== undefined &&
    dimensions !== null &&
    (typeof dimensions !== "number" || dimensions <= 0)
  ) {
    throw new AppError("invalid_argument", {
      message: "dimensions must be a positive integer",
      param: "dimensions",
    });
  }
  const format = body["encoding_format"];
  if (
    format !== undefined &&
    format !== null &&
    (typeof format !== "string" || !encodingFormats.has(format))
  ) {
    throw new AppError("invalid_argument", {
      message: 'encoding_format must be "float" or "base64"',
      param: "encoding_format",
    });
  }
  return inputs;
}

function estimatedUsage(tokens: number): TokenUsage {
  return { promptTokens: tokens, completionTokens: 0, totalTokens: tokens, estimated: true };
}

function estimateInputs(inputs: EmbeddingInputs): number {
  return inputs.kind === "texts"
    ? estimateTextsTokens(inputs.texts)
    : inputs.tokens.reduce((sum, ids) => sum + ids.length, 0);
}

/** The provider's OpenAI-shaped list as the response message, each vector in the caller's format. */
function toResponse(body: JsonObject, format: string, usage: TokenUsage, provider: ProviderConfig) {
  const data = body["data"];
  if (!Array.isArray(data)) throw notAnEmbeddingList(provider, "no data array");
  const embeddings: Embedding[] = data.map((item, i) => {
    if (typeof item !== "object" || item === null || Array.isArray(item)) {
      throw notAnEmbeddingList(provider, `data[${i}] is not an object`);
    }
    const index = typeof item["index"] === "number" ? item["index"] : i;
    const vector = item["embedding"];
    let floats: number[];
    if (typeof vector === "string") floats = fromBase64(vector);
    else if (Array.isArray(vector) && vector.every((v) => typeof v === "number")) floats = vector;
    else throw notAnEmbeddingList(provider, `data[${i}].embedding is neither numbers nor base64`);
    return create(EmbeddingSchema, {
      object: "embedding",
      index,
      embedding:
        format === "base64"
          ? { case: "base64", value: typeof vector === "string" ? vector : toBase64(floats) }
          : { case: "floats", value: { values: floats } },
    });
  });
  return create(CreateEmbeddingsResponseSchema, {
    object: "list",
    data: embeddings,
    model: typeof body["model"] === "string" ? body["model"] : "",
    usage: { promptTokens: usage.promptTokens, totalTokens: usage.totalTokens },
  });
}

/** Little-endian float32 values, base64-encoded (OpenAI's `encoding_format: "base64"`). */
export function toBase64(values: readonly number[]): string {
  const bytes = Buffer.allocUnsafe(values.length * 4);
  values.forEach((v, i) => bytes.writeFloatLE(v, i * 4));
  return bytes.toString("base64");
}

export function fromBase64(text: string): number[] {
  const bytes = Buffer.from(text, "base64");
  const values: number[] = [];
  for (let i = 0; i + 4 <= bytes.length; i += 4) values.push(bytes.readFloatLE(i));
  return values;
}

function notAnEmbeddingList(provider: ProviderConfig, detail: string): AppError {
  return new AppError("upstream_error", {
    cause: new Error(
      `provider ${provider.name} (${provider.kind}) answered JSON that is not an embedding list: ${detail}`,
    ),
  });
}
