import { createServiceImplSpec, type ServiceImpl } from "@connectrpc/connect";
import {
  CreateEmbeddingsRequestSchema,
  type CreateEmbeddingsResponse,
  EmbeddingService,
} from "../../../gen/apikeyserver/v1/embeddings_pb.js";
import type { Exchange } from "../../edge/exchange.js";
import { fromRestJson, toRestJson } from "../../json/index.js";
import type { CallWire } from "../../call/pipeline.js";
import { inProcessMethod } from "../chat-methods.js";
import { httpWire } from "../http-wire.js";
import { parseJsonObjectBody } from "../request-body.js";
import { openAiErrorFromConnect } from "./openai-error.js";

export interface EmbeddingsRouteOptions {
  /** The EmbeddingService implementation the router serves (the same object), invoked in-process. */
  readonly embeddings: ServiceImpl<typeof EmbeddingService>;
  readonly maxBodyBytes: number;
  readonly maxTimeoutMs: number;
}

/**
 * `POST /openai/<product>/v1/embeddings`: OpenAI's request body is the REST JSON of CreateEmbeddings (the
 * contract keeps OpenAI's shape, proto/apikeyserver/v1/embeddings.proto), so the call is that RPC on the
 * pipeline, answered in OpenAI's JSON and errors (the OpenAI surface's, openai-handler.ts).
 */
export function createEmbeddingsRoute(
  options: EmbeddingsRouteOptions,
): (exchange: Exchange, product: string) => CallWire {
  const impl = createServiceImplSpec<typeof EmbeddingService>(EmbeddingService, options.embeddings);
  const method = EmbeddingService.method.createEmbeddings;
  const { spec, url, rpc } = inProcessMethod(impl.methods, method, "createEmbeddingsRoute");
  const { maxBodyBytes, maxTimeoutMs } = options;
  const text = (answer: unknown) =>
    JSON.stringify(toRestJson(method.output, answer as CreateEmbeddingsResponse));
  return (exchange, product) => {
    exchange.rpc = rpc;
    return httpWire(exchange, {
      name: "OpenAI surface",
      spec,
      url,
      maxBodyBytes,
      maxTimeoutMs,
      decode(body) {
        const json = parseJsonObjectBody(exchange.req, body);
        return { request: fromRestJson(CreateEmbeddingsRequestSchema, { ...json, product }) };
      },
      unary: text,
      stream: () => text,
      error: openAiErrorFromConnect,
    });
  };
}
