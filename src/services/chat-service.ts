import { create } from "@bufbuild/protobuf";
import type { ServiceImpl } from "@connectrpc/connect";
import type { ChatService } from "../../gen/apikeyserver/v1/chat_pb.js";
import {
  ChatCompletionChunkSchema,
  ChatCompletionSchema,
  type ChatCompletionRequest,
  ListModelsResponseSchema,
  ModelSchema,
} from "../../gen/apikeyserver/v1/chat_pb.js";
import { AppError } from "../errors/index.js";
import { compileJsonPlans, fromAnswerJson } from "../json/index.js";
import type { ProviderConfig } from "../secrets/types.js";
import { notAChatCompletion, type ChatCore, type ChatRequestView } from "../chat/chat-core.js";
import type { JsonObject } from "../chat/ports.js";

export {
  createChatCore,
  type ChatCore,
  type ChatCoreOptions,
  type ChatRequestView,
} from "../chat/chat-core.js";

export interface ChatServiceOptions {
  /** The chat steps (chat-core.ts), shared with the JSON surfaces. */
  readonly core: ChatCore;
  /** Renders the request as the OpenAI JSON body (the REST JSON writer: nulls, omissions, numbers). */
  readonly toUpstreamJson: (request: ChatCompletionRequest) => JsonObject;
}

/**
 * ChatService (README, API) for protobuf callers (gRPC, Connect; JSON callers take src/services/chat-json.ts):
 * the request message is the core's request view, the provider's
 * JSON becomes a ChatCompletion or ChatCompletionChunk message (fields the contract does not know are
 * dropped; an answer that does not fit is a 502).
 */
export function createChatService(options: ChatServiceOptions): ServiceImpl<typeof ChatService> {
  const { core } = options;
  compileJsonPlans([ChatCompletionSchema, ChatCompletionChunkSchema]);

  /**
   * The upstream JSON body. A binary (gRPC) caller can send messages JSON cannot express, such as a NaN
   * number inside a google.protobuf.Struct; that is the caller's malformed field (400), not our fault.
   */
  function viewOf(request: ChatCompletionRequest): ChatRequestView {
    return {
      product: request.product,
      model: request.model,
      stream: request.stream,
      maxTokens: request.maxTokens,
      maxCompletionTokens: request.maxCompletionTokens,
      messageCount: request.messages.length,
      role: (i) => request.messages[i]?.role ?? "",
      upstreamBody() {
        try {
          return options.toUpstreamJson(request);
        } catch (cause) {
          const detail = cause instanceof Error ? cause.message : String(cause);
          throw new AppError("invalid_argument", { message: `Invalid request: ${detail}`, cause });
        }
      },
    };
  }

  return {
    createChatCompletion(request, ctx) {
      return core.complete(viewOf(request), ctx, (body, provider) =>
        parseProviderJson(ChatCompletionSchema, body, provider),
      );
    },

    streamChatCompletion(request, ctx) {
      return core.stream(viewOf(request), ctx, (chunk, provider) => {
        const message = parseProviderJson(ChatCompletionChunkSchema, chunk, provider);
        const usage = message.usage && {
          promptTokens: message.usage.promptTokens,
          completionTokens: message.usage.completionTokens,
          totalTokens: message.usage.totalTokens,
        };
        return { value: message, usage };
      });
    },

    listModels(request, ctx) {
      const product = core.product(request.product, ctx);
      return create(ListModelsResponseSchema, {
        object: "list",
        data: [...product.models].map(([id, provider]) =>
          create(ModelSchema, { id, object: "model", created: 0n, ownedBy: provider.kind }),
        ),
      });
    },
  };
}

/** A provider answer that does not fit the OpenAI shape is the provider's fault: 502, cause logged. */
export function parseProviderJson<S extends typeof ChatCompletionSchema | typeof ChatCompletionChunkSchema>(
  schema: S,
  body: JsonObject,
  provider: ProviderConfig,
) {
  const message = fromAnswerJson(schema, body);
  if (message === undefined) {
    throw notAChatCompletion(provider, new Error(`the JSON does not fit ${schema.typeName}`));
  }
  return message;
}
