import { randomUUID } from "node:crypto";
import { isObject, type JsonObject, type JsonValue } from "../../upstream/index.js";
import type { ResponseEcho } from "./request.js";

/** An id in OpenAI's form: its prefix (`resp`, `msg`, `fc`) and 32 hex digits. */
export function newId(prefix: string): string {
  return `${prefix}_${randomUUID().replaceAll("-", "")}`;
}

/** How a response ended, from the chat `finish_reason`. */
export interface ResponseEnd {
  readonly status: "completed" | "incomplete" | "in_progress";
  readonly incompleteDetails: JsonObject | null;
}

export function endOf(finishReason: JsonValue | undefined): ResponseEnd {
  if (finishReason === "length") {
    return { status: "incomplete", incompleteDetails: { reason: "max_output_tokens" } };
  }
  if (finishReason === "content_filter") {
    return { status: "incomplete", incompleteDetails: { reason: "content_filter" } };
  }
  return { status: "completed", incompleteDetails: null };
}

/**
 * The response object (OpenAI's `object: "response"`) in OpenAI's key order: what it repeats of the
 * request, its output items, how it ended and its usage (null until known).
 */
export function responseObject(
  header: { readonly id: string; readonly createdAt: number; readonly model: string },
  echo: ResponseEcho,
  end: ResponseEnd,
  output: JsonValue[],
  usage: JsonObject | null,
): JsonObject {
  return {
    id: header.id,
    object: "response",
    created_at: header.createdAt,
    status: end.status,
    background: false,
    error: null,
    incomplete_details: end.incompleteDetails,
    instructions: echo.instructions,
    max_output_tokens: echo.maxOutputTokens,
    model: header.model,
    output,
    parallel_tool_calls: echo.parallelToolCalls,
    previous_response_id: null,
    reasoning: { effort: echo.reasoningEffort, summary: null },
    // Never stored (README, "Responses API").
    store: false,
    temperature: echo.temperature,
    text: echo.text,
    tool_choice: echo.toolChoice,
    tools: echo.tools,
    top_p: echo.topP,
    truncation: "disabled",
    usage,
    user: echo.user,
    metadata: echo.metadata,
  };
}

/** Chat `usage` (normalized) → the Responses API's, with its cached and reasoning details. */
export function usageOf(usage: JsonValue | undefined): JsonObject | null {
  if (!isObject(usage)) return null;
  const prompt = details(usage["prompt_tokens_details"]);
  const completion = details(usage["completion_tokens_details"]);
  const input = num(usage["prompt_tokens"]);
  const output = num(usage["completion_tokens"]);
  return {
    input_tokens: input,
    input_tokens_details: { cached_tokens: num(prompt["cached_tokens"]) },
    output_tokens: output,
    output_tokens_details: { reasoning_tokens: num(completion["reasoning_tokens"]) },
    total_tokens: usage["total_tokens"] === undefined ? input + output : num(usage["total_tokens"]),
  };
}

export function messageItem(id: string, status: string, content: JsonValue[]): JsonObject {
  return { type: "message", id, status, role: "assistant", content };
}

export function outputText(text: string): JsonObject {
  return { type: "output_text", text, annotations: [], logprobs: [] };
}

export function functionCallItem(
  id: string,
  status: string,
  call: { readonly callId: string; readonly name: string; readonly arguments: string },
): JsonObject {
  return {
    type: "function_call",
    id,
    call_id: call.callId,
    name: call.name,
    arguments: call.arguments,
    status,
  };
}

/**
 * A chat completion (normalized by the JSON engine) → the response object: the first choice's text or
 * refusal as a `message` item, each tool call as a `function_call` item.
 */
export function responseFromCompletion(completion: JsonObject, echo: ResponseEcho): JsonObject {
  const choices = completion["choices"];
  const choice = Array.isArray(choices) && isObject(choices[0]) ? choices[0] : {};
  const message = isObject(choice["message"]) ? choice["message"] : {};
  const output: JsonValue[] = [];
  const content = message["content"];
  const refusal = message["refusal"];
  if (typeof content === "string" && content !== "") {
    output.push(messageItem(newId("msg"), "completed", [outputText(content)]));
  } else if (typeof refusal === "string" && refusal !== "") {
    output.push(messageItem(newId("msg"), "completed", [{ type: "refusal", refusal }]));
  }
  const calls = message["tool_calls"];
  if (Array.isArray(calls)) {
    for (const call of calls) {
      if (!isObject(call) || !isObject(call["function"])) continue;
      const fn = call["function"];
      output.push(
        functionCallItem(newId("fc"), "completed", {
          callId: str(call["id"]),
          name: str(fn["name"]),
          arguments: str(fn["arguments"]),
        }),
      );
    }
  }
  const created = completion["created"];
  return responseObject(
    {
      id: newId("resp"),
      createdAt: typeof created === "number" && created > 0 ? created : Math.floor(Date.now() / 1000),
      model:
        typeof completion["model"] === "string" && completion["model"] !== ""
          ? completion["model"]
          : echo.model,
    },
    echo,
    endOf(choice["finish_reason"]),
    output,
    usageOf(completion["usage"]),
  );
}

function details(v: JsonValue | undefined): JsonObject {
  return isObject(v) ? v : {};
}

function num(v: JsonValue | undefined): number {
  return typeof v === "number" ? v : 0;
}

function str(v: JsonValue | undefined): string {
  return typeof v === "string" ? v : "";
}
