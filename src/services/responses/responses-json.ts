import type { HandlerContext } from "@connectrpc/connect";
import { ChatCompletionChunkSchema, ChatCompletionSchema } from "../../../gen/apikeyserver/v1/chat_pb.js";
import type { AnswerCodec, ChatCore } from "../../chat/chat-core.js";
import type { JsonObject } from "../../chat/ports.js";
import { AppError } from "../../errors/index.js";
import { compileJsonPlans } from "../../json/index.js";
import { jsonAnswer, jsonChunk } from "../chat-json.js";
import { responseFromCompletion } from "./answer.js";
import { createResponseEvents } from "./events.js";
import { takeResponsesRequest, type ResponsesRequest } from "./request.js";

export type { ResponsesRequest } from "./request.js";

/**
 * OpenAI's Responses API (`POST /v1/responses`) for every provider kind, on the chat core
 * (docs/architecture.md, "The Responses API"): the request becomes a chat request
 * (src/services/responses/request.ts), so products, models, output caps, limits and usage are the chat
 * steps exactly; the chat answer becomes a response object (answer.ts), a chat stream the named events
 * (events.ts). Stateless: nothing is stored, here or upstream.
 */
export interface JsonResponses {
  /** The request from the caller's JSON; throws AppError `invalid_argument` naming a field it cannot serve. */
  readonly take: (json: JsonObject, product: string) => ResponsesRequest;
  /** The response object of a unary call. */
  readonly complete: (request: ResponsesRequest, ctx: HandlerContext) => Promise<JsonObject>;
  /** The events of a streamed call, without `sequence_number` (the codec numbers them as it writes). */
  readonly stream: (request: ResponsesRequest, ctx: HandlerContext) => AsyncIterable<JsonObject>;
}

export function createJsonResponses(core: ChatCore): JsonResponses {
  compileJsonPlans([ChatCompletionSchema, ChatCompletionChunkSchema]);
  return {
    take: takeResponsesRequest,
    complete(request, ctx) {
      const answer: AnswerCodec<JsonObject> = (body, provider) =>
        responseFromCompletion(jsonAnswer(body, provider), request.echo);
      return core.complete(request.view, ctx, answer).catch((err: unknown) => {
        throw inResponsesTerms(err);
      });
    },
    async *stream(request, ctx) {
      const events = createResponseEvents(request.echo);
      let started = false;
      try {
        for await (const chunk of core.stream(request.view, ctx, jsonChunk)) {
          if (!started) {
            started = true;
            yield* events.start(chunk);
          }
          yield* events.chunk(chunk);
        }
      } catch (err) {
        throw inResponsesTerms(err);
      }
      if (!started) yield* events.start(undefined);
      yield* events.end();
    },
  };
}

/** Chat request fields a provider adapter may refuse (as `<path>: <problem>`) → the Responses field sent. */
const responsesNames: ReadonlyArray<readonly [RegExp, string]> = [
  [/^reasoning_effort\b/, "reasoning.effort"],
  [/^response_format\b/, "text.format"],
  [/^max_completion_tokens\b/, "max_output_tokens"],
  [/^tools\[(\d+)\]\.function\b/, "tools[$1]"],
  [/^(parallel_tool_calls|tool_choice|temperature|top_p|user)\b/, "$1"],
];

/**
 * A provider adapter's 400 about a chat field (`reasoning_effort: not supported by provider kind
 * "anthropic"`), reworded to name the Responses field the caller sent (`reasoning.effort: ...`), which is
 * also its `param`. Anything else passes unchanged.
 */
function inResponsesTerms(err: unknown): unknown {
  if (!(err instanceof AppError) || err.code !== "invalid_argument") return err;
  const colon = err.message.indexOf(": ");
  if (colon < 0) return err;
  const path = err.message.slice(0, colon);
  for (const [pattern, name] of responsesNames) {
    if (!pattern.test(path)) continue;
    const param = path.replace(pattern, name);
    return new AppError("invalid_argument", {
      message: param + err.message.slice(colon),
      param,
      cause: err.cause,
    });
  }
  return err;
}
