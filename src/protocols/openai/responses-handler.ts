import type { ConnectError } from "@connectrpc/connect";
import type { CallWire } from "../../call/pipeline.js";
import type { ChatMethod } from "../chat-methods.js";
import type { InProcessCall } from "../../call/in-process-call.js";
import type { Exchange, NodeServerResponse } from "../../edge/exchange.js";
import { AppError } from "../../errors/index.js";
import type { JsonObject } from "../../chat/ports.js";
import type { JsonResponses } from "../../services/responses/responses-json.js";
import { httpWire } from "../http-wire.js";
import { copyHeaders } from "../http-write.js";
import { parseJsonObjectBody } from "../request-body.js";
import { sseEvent, writeSse } from "../sse.js";
import { openAiErrorFromConnect } from "./openai-error.js";

export interface ResponsesCallOptions {
  readonly responses: JsonResponses;
  readonly product: string;
  /** The chat RPCs whose interceptors, limits and access line a Responses call shares. */
  readonly unary: ChatMethod;
  readonly stream: ChatMethod;
  readonly maxBodyBytes: number;
  readonly maxTimeoutMs: number;
}

/**
 * What a call about a stored response (`GET`/`DELETE /responses/{id}`, `…/cancel`, `…/input_items`)
 * answers: none is ever stored (README, "Responses API"), so there is nothing to read.
 */
export function responseNotStored(): AppError {
  return new AppError("response_not_found", {
    metadata: { hint: "responses are not stored: send the whole conversation in input on each request" },
  });
}

/**
 * `POST /openai/<product>/v1/responses` (README, "Responses API") on the call pipeline, as the chat
 * completions route: the body says unary or `stream: true`, and the call runs as CreateChatCompletion or
 * StreamChatCompletion (the same interceptors, limits and access line, which names the surface
 * `responses`) with the Responses service (src/services/responses/) in place of the chat JSON. A unary
 * answer is the response object; a stream is OpenAI's named events (`event: <type>`), each with its
 * `sequence_number`, and no `[DONE]`; a failure after the first event ends the stream with an `error`
 * event, never a silent end.
 */
export function responsesCall(exchange: Exchange, options: ResponsesCallOptions): CallWire {
  const { responses, product, unary, stream } = options;
  exchange.rpc = unary.rpc;
  const base = httpWire(exchange, {
    name: "OpenAI surface",
    spec: unary.spec,
    url: unary.url,
    maxBodyBytes: options.maxBodyBytes,
    maxTimeoutMs: options.maxTimeoutMs,
    decode(body) {
      const json = parseJsonObjectBody(exchange.req, body);
      const request = responses.take(json, product);
      exchange.rpc = request.stream ? stream.rpc : unary.rpc;
      return request.stream
        ? { request, stream: responses.stream as never, spec: stream.spec }
        : { request, unary: responses.complete, spec: unary.spec };
    },
    unary: (answer) => JSON.stringify(answer),
    stream: () => (event) => JSON.stringify(event),
    error: openAiErrorFromConnect,
  });
  return {
    ...base,
    async stream(opened, messages) {
      let first: IteratorResult<JsonObject>;
      try {
        first = (await messages.next()) as IteratorResult<JsonObject>;
      } catch (err) {
        // An error before the first event (authentication, limits, the provider refusing) is an ordinary
        // error answer with its status.
        await base.error(opened, err as ConnectError);
        return;
      }
      await writeEvents(exchange.res, opened, first, messages as AsyncIterator<JsonObject>);
    },
  };
}

/**
 * Writes the events as OpenAI's Responses stream does: `event: <type>` and `data: <json>` with the
 * event's `sequence_number`, counted from 0. A failure is an `error` event (`code`, `message`, `param` as
 * the OpenAI error body has them), and the stream ends there.
 */
async function writeEvents(
  res: NodeServerResponse,
  opened: InProcessCall,
  first: IteratorResult<JsonObject>,
  messages: AsyncIterator<JsonObject>,
): Promise<void> {
  const { context } = opened;
  let sequence = 0;
  await writeSse(
    res,
    copyHeaders(context.responseHeader, {}),
    first,
    messages,
    {
      frame(event) {
        const type = typeof event["type"] === "string" ? event["type"] : "message";
        return sseEvent(JSON.stringify({ ...event, sequence_number: sequence++ }), type);
      },
      errorFrame: (err) => errorEvent(err, sequence++),
    },
    context.signal,
  );
}

function errorEvent(err: ConnectError, sequence: number): string {
  const body = JSON.parse(openAiErrorFromConnect(err).body) as {
    error: { message: string; code: string; param: string | null };
  };
  const { message, code, param } = body.error;
  return sseEvent(
    JSON.stringify({ type: "error", code, message, param, sequence_number: sequence }),
    "error",
  );
}
