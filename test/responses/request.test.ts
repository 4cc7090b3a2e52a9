import { describe, expect, it } from "vitest";
import { AppError } from "../../src/errors/index.js";
import { takeResponsesRequest } from "../../src/services/responses/request.js";
import type { JsonObject } from "../../src/upstream/index.js";

// The Responses request → the chat request the core runs (src/services/responses/request.ts): the mapping
// of every served field, and a 400 naming the field for everything it does not serve.

const take = (json: JsonObject) => takeResponsesRequest(json, "product-dev");

function refusal(json: JsonObject): { message: string; param: string | undefined } {
  try {
    take(json);
  } catch (err) {
    expect(err).toBeInstanceOf(AppError);
    const e = err as AppError;
    expect(e.code).toBe("invalid_argument");
    return { message: e.message, param: e.param };
  }
  throw new Error("accepted");
}

describe("takeResponsesRequest", () => {
  it("maps input items in order: messages, consecutive function calls in one turn, their outputs", () => {
    const request = take({
      model: "m",
      instructions: "Sys",
      input: [
        { type: "message", role: "user", content: [{ type: "input_text", text: "a" }] },
        {
          role: "assistant",
          id: "msg_1",
          status: "completed",
          content: [
            { type: "output_text", text: "b", annotations: [] },
            { type: "output_text", text: "c" },
          ],
        },
        { type: "function_call", call_id: "c1", name: "f", arguments: "{}", id: "fc_1", status: "completed" },
        { type: "function_call", call_id: "c2", name: "g", arguments: '{"x":1}' },
        { type: "function_call_output", call_id: "c1", output: "one" },
        { type: "function_call_output", call_id: "c2", output: [{ type: "input_text", text: "two" }] },
        { type: "reasoning", id: "rs_1", summary: [] },
        { role: "user", content: "d" },
      ],
    });
    expect(request.stream).toBe(false);
    expect(request.view.upstreamBody()).toStrictEqual({
      model: "m",
      messages: [
        { role: "system", content: "Sys" },
        { role: "user", content: [{ type: "text", text: "a" }] },
        {
          role: "assistant",
          content: "bc",
          tool_calls: [
            { id: "c1", type: "function", function: { name: "f", arguments: "{}" } },
            { id: "c2", type: "function", function: { name: "g", arguments: '{"x":1}' } },
          ],
        },
        { role: "tool", tool_call_id: "c1", content: "one" },
        { role: "tool", tool_call_id: "c2", content: [{ type: "text", text: "two" }] },
        { role: "user", content: "d" },
      ],
      store: false,
    });
    expect(request.view.messageCount).toBe(6);
    expect(request.view.role(2)).toBe("assistant");
  });

  it("a stream asks the provider for its usage; store is false whatever the caller sent", () => {
    const request = take({ model: "m", input: "hi", stream: true, store: true });
    expect(request.stream).toBe(true);
    expect(request.view.stream).toBe(true);
    expect(request.view.upstreamBody()).toStrictEqual({
      model: "m",
      messages: [{ role: "user", content: "hi" }],
      store: false,
      stream: true,
      stream_options: { include_usage: true },
    });
  });

  it("max_output_tokens is the cap the core checks, under its own name", () => {
    const { view } = take({ model: "m", input: "hi", max_output_tokens: 7 });
    expect(view.maxCompletionTokens).toBe(7);
    expect(view.maxCompletionTokensField).toBe("max_output_tokens");
    expect(view.maxTokens).toBeUndefined();
    expect(view.upstreamBody()["max_completion_tokens"]).toBe(7);
  });

  it.each([
    ["text", { type: "text" }, undefined],
    ["json_object", { type: "json_object" }, { type: "json_object" }],
    [
      "json_schema",
      { type: "json_schema", name: "n", schema: { type: "object" }, strict: true, description: "d" },
      {
        type: "json_schema",
        json_schema: { name: "n", schema: { type: "object" }, description: "d", strict: true },
      },
    ],
  ])("text.format %s → response_format", (_, format, responseFormat) => {
    const body = take({ model: "m", input: "x", text: { format } }).view.upstreamBody();
    expect(body["response_format"]).toStrictEqual(responseFormat);
  });

  it.each([
    ["auto", "auto"],
    ["required", "required"],
    ["none", "none"],
    [
      { type: "function", name: "f" },
      { type: "function", function: { name: "f" } },
    ],
  ])("tool_choice %j → %j", (choice, expected) => {
    const body = take({
      model: "m",
      input: "x",
      tools: [{ type: "function", name: "f", parameters: { type: "object" } }],
      tool_choice: choice,
    }).view.upstreamBody();
    expect(body["tool_choice"]).toStrictEqual(expected);
  });

  it("null fields count as absent", () => {
    const body = take({
      model: "m",
      input: "x",
      previous_response_id: null,
      background: null,
      temperature: null,
      reasoning: { effort: null, summary: null },
      text: { format: null, verbosity: null },
    }).view.upstreamBody();
    expect(body).toStrictEqual({ model: "m", messages: [{ role: "user", content: "x" }], store: false });
  });

  it.each<[string, JsonObject, string, string]>([
    ["an unknown field", { background: true }, "background", "background: not supported"],
    [
      "previous_response_id",
      { previous_response_id: "resp_1" },
      "previous_response_id",
      "previous_response_id: not supported: this server stores no responses; send the whole conversation in input",
    ],
    [
      "conversation",
      { conversation: "conv_1" },
      "conversation",
      "conversation: not supported: this server stores no responses; send the whole conversation in input",
    ],
    ["input of another type", { input: 3 }, "input", "input: must be a string or an array of items"],
    ["an input item not an object", { input: ["x"] }, "input[0]", "input[0]: must be an object"],
    [
      "an input item type",
      { input: [{ type: "item_reference", id: "x" }] },
      "input[0].type",
      'input[0].type: "item_reference" is not supported',
    ],
    [
      "a role",
      { input: [{ role: "tool", content: "x" }] },
      "input[0].role",
      "input[0].role: must be user, assistant, system or developer",
    ],
    [
      "a message field",
      { input: [{ role: "user", content: "x", name: "n" }] },
      "input[0].name",
      "input[0].name: not supported",
    ],
    [
      "message content",
      { input: [{ role: "user", content: 1 }] },
      "input[0].content",
      "input[0].content: must be a string or an array of parts",
    ],
    [
      "a part type",
      { input: [{ role: "user", content: [{ type: "input_audio" }] }] },
      "input[0].content[0].type",
      'input[0].content[0].type: "input_audio" is not supported',
    ],
    [
      "an image by file id",
      { input: [{ role: "user", content: [{ type: "input_image", file_id: "f" }] }] },
      "input[0].content[0].file_id",
      "input[0].content[0].file_id: not supported: send the image as image_url (a URL or a data: URL)",
    ],
    [
      "an image part for the assistant",
      { input: [{ role: "assistant", content: [{ type: "input_image", image_url: "u" }] }] },
      "input[0].content[0].type",
      "input[0].content[0].type: not supported for role assistant",
    ],
    [
      "a function call without its name",
      { input: [{ type: "function_call", call_id: "c", arguments: "{}" }] },
      "input[0].name",
      "input[0].name: is required (a string)",
    ],
    [
      "a function call output of another type",
      { input: [{ type: "function_call_output", call_id: "c", output: 1 }] },
      "input[0].output",
      "input[0].output: must be a string or an array of parts",
    ],
    ["no input", {}, "input", "input: is required"],
    ["only instructions", { instructions: "x" }, "input", "input: is required"],
    [
      "a tool type",
      { tools: [{ type: "file_search" }] },
      "tools[0].type",
      'tools[0].type: "file_search" is not supported (only function)',
    ],
    [
      "a tool without its name",
      { tools: [{ type: "function" }] },
      "tools[0].name",
      "tools[0].name: is required (a string)",
    ],
    [
      "tool parameters",
      { tools: [{ type: "function", name: "f", parameters: 1 }] },
      "tools[0].parameters",
      "tools[0].parameters: must be an object",
    ],
    [
      "tool_choice",
      { tool_choice: { type: "web_search" } },
      "tool_choice",
      'tool_choice: must be "auto", "none", "required" or {"type": "function", "name": ...}',
    ],
    [
      "text.format.type",
      { text: { format: { type: "xml" } } },
      "text.format.type",
      "text.format.type: must be text, json_object or json_schema",
    ],
    [
      "a json_schema without schema",
      { text: { format: { type: "json_schema", name: "n" } } },
      "text.format.schema",
      "text.format.schema: is required",
    ],
    ["text.verbosity", { text: { verbosity: "low" } }, "text.verbosity", "text.verbosity: not supported"],
    [
      "reasoning.summary",
      { reasoning: { summary: "auto" } },
      "reasoning.summary",
      "reasoning.summary: not supported",
    ],
    [
      "reasoning.effort of another type",
      { reasoning: { effort: 1 } },
      "reasoning.effort",
      "reasoning.effort: must be a string",
    ],
    ["an include", { include: ["message.output_text.logprobs"] }, "include[0]", "include[0]: not supported"],
    ["include not a list", { include: "x" }, "include", "include: must be an array of strings"],
    ["metadata values", { metadata: { a: 1 } }, "metadata.a", "metadata.a: must be a string"],
    ["truncation auto", { truncation: "auto" }, "truncation", 'truncation: only "disabled" is supported'],
    [
      "stream_options",
      { stream_options: { include_usage: true } },
      "stream_options.include_usage",
      "stream_options.include_usage: not supported",
    ],
    [
      "max_output_tokens",
      { max_output_tokens: 1.5 },
      "max_output_tokens",
      "max_output_tokens: must be an integer",
    ],
    ["temperature", { temperature: "hot" }, "temperature", "temperature: must be a number"],
    ["stream", { stream: "yes" }, "stream", "stream: must be a boolean"],
    ["model", { model: 4 }, "model", "model: must be a string"],
  ])("%s → 400 naming it", (_, fields, param, message) => {
    const json: JsonObject = { model: "m", input: "x", ...fields };
    if (!("input" in fields) && (param === "input" || "instructions" in fields)) delete json["input"];
    expect(refusal(json)).toStrictEqual({ message, param });
  });
});
