import {
  create,
  fromJson,
  type DescMessage,
  type JsonValue as PbJsonValue,
  type MessageShape,
} from "@bufbuild/protobuf";
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
import type { ProviderConfig } from "../secrets/types.js";
import { notAChatCompletion, type ChatCore, type ChatRequestView } from "./chat-core.js";
import type { JsonObject } from "./ports.js";

export { createChatCore, type ChatCore, type ChatCoreOptions, type ChatRequestView } from "./chat-core.js";

export interface ChatServiceOptions {
  /** The chat steps (chat-core.ts), shared with the JSON surfaces. */
  readonly core: ChatCore;
  /** Renders the request as the OpenAI JSON body (the REST JSON writer: nulls, omissions, numbers). */
  readonly toUpstreamJson: (request: ChatCompletionRequest) => JsonObject;
  /**
   * Reads a provider's answer or chunk into its message (src/http/rest-json.ts `fromProviderJson`, which
   * keeps the `null`s the contract's options give a meaning); default protobuf's reader, ignoring fields
   * the contract does not know.
   */
  readonly fromProviderJson?: ProviderJsonReader;
}

/** See {@link ChatServiceOptions.fromProviderJson}. */
export type ProviderJsonReader = <S extends DescMessage>(schema: S, json: JsonObject) => MessageShape<S>;

const protobufReader: ProviderJsonReader = (schema, json) =>
  fromJson(schema, json as PbJsonValue, { ignoreUnknownFields: true });

/**
 * ChatService (README, API) for protobuf callers (gRPC, Connect, and REST requests the JSON fast path
 * hands back, src/http/chat-json.ts): the request message is the core's request view, the provider's
 * JSON becomes a ChatCompletion or ChatCompletionChunk message (fields the contract does not know are
 * dropped; an answer that does not fit is a 502).
 */
export function createChatService(options: ChatServiceOptions): ServiceImpl<typeof ChatService> {
  const { core } = options;
  const read = options.fromProviderJson ?? protobufReader;

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
        parseProviderJson(ChatCompletionSchema, body, provider, read),
      );
    },

    streamChatCompletion(request, ctx) {
      return core.stream(viewOf(request), ctx, (chunk, provider) => {
        const message = parseProviderJson(ChatCompletionChunkSchema, chunk, provider, read);
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
  read: ProviderJsonReader = protobufReader,
) {
  try {
    return read(schema, body);
  } catch (cause) {
    throw notAChatCompletion(provider, cause);
  }
}
