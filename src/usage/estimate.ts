import { countTokens, setMergeCacheSize } from "gpt-tokenizer";
import type { JsonObject, JsonValue } from "../upstream/types.js";

/**
 * Token estimates for what a provider did not report: the prompt of a call admitted before its usage is
 * known, the output of a call cut short. Counted with OpenAI's o200k tokenizer (gpt-tokenizer), an estimate
 * for other providers' models. At most `TOKENIZED_CHARS` characters of one estimate are tokenized and the rest
 * is extrapolated from them (`Tally`), so a prompt of any size costs the event loop a bounded slice.
 */
const TOKENIZED_CHARS = 65_536;
/** OpenAI's documented framing per chat message and the priming of the answer. */
const PER_MESSAGE = 3;
const PRIMING = 3;
/** An image part, whatever its size: the price of one high-detail 512 px tile plus the base (OpenAI's rule). */
const PER_IMAGE = 255;

/**
 * Special tokens spelled out in a prompt or an answer ("<|endoftext|>") are text to a provider, and counted as
 * text here; the tokenizer's default would throw on them, and an estimate must never fail a call.
 */
const asText = { disallowedSpecial: new Set<string>() };

/**
 * The tokenizer's merge cache is off. Its keys are pieces of the texts counted, and V8 keeps a long piece as
 * a slice of its text: with the default 100,000 entries, each prompt a cached piece came from would stay in
 * memory (its 64 KiB head, for one long word of it), so memory grew with the prompts seen. Without the cache
 * a 64 KiB head takes about 14 ms to count instead of 6 (the same text counted again); a prompt of a few KiB,
 * well under a millisecond. test/usage/estimate-memory.test.ts shows nothing is kept.
 */
setMergeCacheSize(0);

/**
 * Counts the texts of one estimate under one budget: the first `TOKENIZED_CHARS` characters of them all are
 * tokenized, the rest extrapolated (a text cut by the budget at its own head's rate, later texts at the rate
 * of all that was tokenized). An estimate therefore costs the event loop the same bounded slice whatever the
 * size of the prompt: a 32 MiB Anthropic body or 2 MiB of chat messages are not tokenized whole.
 */
class Tally {
  private budget = TOKENIZED_CHARS;
  private chars = 0;
  private tokens = 0;

  count(text: string): number {
    if (text.length === 0) return 0;
    if (this.budget === 0) return Math.ceil((text.length * this.tokens) / this.chars);
    const headChars = Math.min(text.length, this.budget);
    const head = countTokens(headChars === text.length ? text : text.slice(0, headChars), asText);
    this.budget -= headChars;
    this.chars += headChars;
    this.tokens += head;
    return headChars === text.length ? head : Math.ceil((head * text.length) / headChars);
  }
}

/** Tokens of one text, extrapolated past the first `TOKENIZED_CHARS` characters. */
export function estimateTextTokens(text: string): number {
  return new Tally().count(text);
}

/** Tokens of several texts (embedding inputs), under one tokenizing budget. */
export function estimateTextsTokens(texts: readonly string[]): number {
  const tally = new Tally();
  let tokens = 0;
  for (const text of texts) tokens += tally.count(text);
  return tokens;
}

/**
 * Tokens of a UTF-8 document given as bytes (a body forwarded without being parsed): the head decoded and
 * tokenized, the rest extrapolated by its byte length, so a 32 MiB body is never decoded whole.
 */
export function estimateUtf8Tokens(bytes: Uint8Array): number {
  const headBytes = Math.min(bytes.length, TOKENIZED_CHARS);
  if (headBytes === 0) return 0;
  const head = Buffer.from(bytes.buffer, bytes.byteOffset, headBytes).toString("utf8");
  const tokens = estimateTextTokens(head);
  return headBytes === bytes.length ? tokens : Math.ceil((tokens * bytes.length) / headBytes);
}

/**
 * Prompt tokens of an OpenAI chat request body: each message's text parts (and tool calls' arguments), the
 * tool definitions and the response format, with OpenAI's per-message framing; an image part counts
 * `PER_IMAGE`. Never throws on a body of an unexpected shape: what it cannot read counts as its JSON text.
 */
export function estimatePromptTokens(body: JsonObject): number {
  const tally = new Tally();
  let tokens = PRIMING;
  const messages = body["messages"];
  if (Array.isArray(messages)) {
    for (const message of messages) {
      tokens += PER_MESSAGE;
      if (typeof message !== "object" || message === null || Array.isArray(message)) continue;
      tokens += contentTokens(message["content"], tally);
      const calls = message["tool_calls"];
      if (calls !== undefined && calls !== null) tokens += tally.count(JSON.stringify(calls));
      const name = message["name"];
      if (typeof name === "string") tokens += tally.count(name);
    }
  }
  for (const field of ["tools", "functions", "response_format"]) {
    const value = body[field];
    if (value !== undefined && value !== null) tokens += tally.count(JSON.stringify(value));
  }
  return tokens;
}

function contentTokens(content: JsonValue | undefined, tally: Tally): number {
  if (typeof content === "string") return tally.count(content);
  if (!Array.isArray(content)) return 0;
  let tokens = 0;
  for (const part of content) {
    if (typeof part === "string") {
      tokens += tally.count(part);
    } else if (typeof part === "object" && part !== null && !Array.isArray(part)) {
      const text = part["text"];
      if (typeof text === "string") tokens += tally.count(text);
      else if (part["type"] === "image_url" || part["type"] === "input_image") tokens += PER_IMAGE;
      else tokens += tally.count(JSON.stringify(part));
    }
  }
  return tokens;
}
