import { isObject, type JsonObject, type JsonValue } from "../../upstream/index.js";
import {
  endOf,
  functionCallItem,
  messageItem,
  newId,
  outputText,
  responseObject,
  usageOf,
} from "./answer.js";
import type { ResponseEcho } from "./request.js";

/** The item being streamed: a message's one content part, or a function call. */
type OpenItem =
  | {
      readonly kind: "text";
      readonly part: "output_text" | "refusal";
      readonly id: string;
      readonly outputIndex: number;
      text: string;
    }
  | {
      readonly kind: "call";
      readonly id: string;
      readonly outputIndex: number;
      readonly toolIndex: number;
      readonly callId: string;
      readonly name: string;
      arguments: string;
    };

/**
 * Turns a chat completion stream (normalized chunks) into the Responses API's named events, in OpenAI's
 * order: `response.created`, `response.in_progress`, then per output item `response.output_item.added`,
 * its content part or arguments as deltas and `.done` events, `response.output_item.done`, and at the end
 * `response.completed` (or `response.incomplete` after a length or content-filter stop) with the usage.
 * The codec numbers the events (`sequence_number`) as it writes them.
 */
export interface ResponseEvents {
  /** The opening events, for the first chunk (whose `created` and `model` the response takes). */
  start(chunk: JsonObject | undefined): JsonObject[];
  chunk(chunk: JsonObject): JsonObject[];
  /** The closing events of a stream that finished. */
  end(): JsonObject[];
}

export function createResponseEvents(echo: ResponseEcho): ResponseEvents {
  let header = { id: newId("resp"), createdAt: Math.floor(Date.now() / 1000), model: echo.model };
  const output: JsonValue[] = [];
  let open: OpenItem | undefined;
  let finishReason: JsonValue | undefined;
  let usage: JsonObject | null = null;
  const inProgress = { status: "in_progress", incompleteDetails: null } as const;

  function close(events: JsonObject[]): void {
    const item = open;
    if (item === undefined) return;
    open = undefined;
    const at = { item_id: item.id, output_index: item.outputIndex };
    let done: JsonObject;
    if (item.kind === "text") {
      const part =
        item.part === "output_text" ? outputText(item.text) : { type: "refusal", refusal: item.text };
      if (item.part === "output_text") {
        events.push({
          type: "response.output_text.done",
          ...at,
          content_index: 0,
          text: item.text,
          logprobs: [],
        });
      } else {
        events.push({ type: "response.refusal.done", ...at, content_index: 0, refusal: item.text });
      }
      events.push({ type: "response.content_part.done", ...at, content_index: 0, part });
      done = messageItem(item.id, "completed", [part]);
    } else {
      events.push({
        type: "response.function_call_arguments.done",
        ...at,
        name: item.name,
        arguments: item.arguments,
      });
      done = functionCallItem(item.id, "completed", item);
    }
    output.push(done);
    events.push({ type: "response.output_item.done", output_index: item.outputIndex, item: done });
  }

  function text(events: JsonObject[], part: "output_text" | "refusal", delta: string): void {
    if (open?.kind !== "text" || open.part !== part) {
      close(events);
      const item: OpenItem = { kind: "text", part, id: newId("msg"), outputIndex: output.length, text: "" };
      open = item;
      const at = { item_id: item.id, output_index: item.outputIndex };
      events.push({
        type: "response.output_item.added",
        output_index: item.outputIndex,
        item: messageItem(item.id, "in_progress", []),
      });
      events.push({
        type: "response.content_part.added",
        ...at,
        content_index: 0,
        part: part === "output_text" ? outputText("") : { type: "refusal", refusal: "" },
      });
    }
    open.text += delta;
    const at = { item_id: open.id, output_index: open.outputIndex, content_index: 0 };
    events.push(
      part === "output_text"
        ? { type: "response.output_text.delta", ...at, delta, logprobs: [] }
        : { type: "response.refusal.delta", ...at, delta },
    );
  }

  function call(events: JsonObject[], tc: JsonObject): void {
    const toolIndex = typeof tc["index"] === "number" ? tc["index"] : 0;
    const fn = isObject(tc["function"]) ? tc["function"] : {};
    if (open?.kind !== "call" || open.toolIndex !== toolIndex) {
      close(events);
      const item: OpenItem = {
        kind: "call",
        id: newId("fc"),
        outputIndex: output.length,
        toolIndex,
        callId: typeof tc["id"] === "string" ? tc["id"] : "",
        name: typeof fn["name"] === "string" ? fn["name"] : "",
        arguments: "",
      };
      open = item;
      events.push({
        type: "response.output_item.added",
        output_index: item.outputIndex,
        item: functionCallItem(item.id, "in_progress", item),
      });
    }
    const delta = fn["arguments"];
    if (typeof delta === "string" && delta !== "") {
      open.arguments += delta;
      events.push({
        type: "response.function_call_arguments.delta",
        item_id: open.id,
        output_index: open.outputIndex,
        delta,
      });
    }
  }

  return {
    start(chunk) {
      const created = chunk?.["created"];
      const model = chunk?.["model"];
      header = {
        id: header.id,
        createdAt: typeof created === "number" && created > 0 ? created : header.createdAt,
        model: typeof model === "string" && model !== "" ? model : echo.model,
      };
      const response = responseObject(header, echo, inProgress, [], null);
      return [
        { type: "response.created", response },
        { type: "response.in_progress", response },
      ];
    },
    chunk(chunk) {
      const events: JsonObject[] = [];
      if (isObject(chunk["usage"])) usage = usageOf(chunk["usage"]);
      const choices = chunk["choices"];
      const choice = Array.isArray(choices) && isObject(choices[0]) ? choices[0] : undefined;
      if (choice === undefined) return events;
      const delta = isObject(choice["delta"]) ? choice["delta"] : {};
      const content = delta["content"];
      if (typeof content === "string" && content !== "") text(events, "output_text", content);
      const refusal = delta["refusal"];
      if (typeof refusal === "string" && refusal !== "") text(events, "refusal", refusal);
      const calls = delta["tool_calls"];
      if (Array.isArray(calls)) {
        for (const tc of calls) if (isObject(tc)) call(events, tc);
      }
      const finish = choice["finish_reason"];
      if (typeof finish === "string" && finish !== "") finishReason = finish;
      return events;
    },
    end() {
      const events: JsonObject[] = [];
      close(events);
      const end = endOf(finishReason);
      const response = responseObject(header, echo, end, output, usage);
      events.push({
        type: end.status === "completed" ? "response.completed" : "response.incomplete",
        response,
      });
      return events;
    },
  };
}
