/**
 * Runs in the browser (bundled at test time by test/support/browser.ts): each web client the README names,
 * as a page on another origin would use it. Every function returns plain JSON for the test to assert on.
 * Written against what both Node and the DOM have (fetch, streams, TextDecoder), so the repository's
 * TypeScript settings check it without the DOM library.
 */
import { create } from "@bufbuild/protobuf";
import { ConnectError, createClient, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcWebTransport } from "@connectrpc/connect-web";
import Anthropic from "@anthropic-ai/sdk";
import OpenAI from "openai";
import { ChatCompletionRequestSchema, ChatService } from "../../../gen/apikeyserver/v1/chat_pb.js";

/** Where and as whom a page calls. */
export interface Target {
  /** The server's base URL, e.g. `http://127.0.0.1:8000`. */
  readonly server: string;
  readonly token: string;
  readonly product: string;
  readonly model: string;
}

/** What a page could read of one HTTP answer. */
export interface FetchResult {
  readonly status: number;
  /** The response headers JavaScript is allowed to read (CORS-safelisted plus the exposed ones). */
  readonly headers: Readonly<Record<string, string>>;
  readonly body: string;
}

/** What a page could read of one RPC, or the error it got. */
export type RpcResult =
  | { readonly ok: true; readonly texts: readonly string[] }
  | { readonly ok: false; readonly code: string; readonly message: string; readonly rawMessage: string };

const userMessage = (text: string) => ({ role: "user", content: text });

async function restUnary(target: Target, text: string): Promise<FetchResult> {
  const res = await fetch(`${target.server}/v1/chat/${target.product}`, {
    method: "POST",
    headers: { authorization: `Bearer ${target.token}`, "content-type": "application/json" },
    body: JSON.stringify({ model: target.model, messages: [userMessage(text)] }),
  });
  return { status: res.status, headers: Object.fromEntries(res.headers), body: await res.text() };
}

/** Reads the SSE route with fetch streaming: the `data:` payload of every event, in arrival order. */
async function restStream(target: Target, text: string): Promise<{ status: number; events: string[] }> {
  const res = await fetch(`${target.server}/v1/chat/${target.product}:stream`, {
    method: "POST",
    headers: { authorization: `Bearer ${target.token}`, "content-type": "application/json" },
    body: JSON.stringify({ model: target.model, messages: [userMessage(text)], stream: true }),
  });
  const events: string[] = [];
  if (res.body === null) return { status: res.status, events };
  const decoder = new TextDecoder();
  let buffered = "";
  for await (const chunk of res.body as AsyncIterable<Uint8Array>) {
    buffered += decoder.decode(chunk, { stream: true });
    let end: number;
    while ((end = buffered.indexOf("\n\n")) >= 0) {
      const event = buffered.slice(0, end);
      buffered = buffered.slice(end + 2);
      for (const line of event.split("\n")) if (line.startsWith("data: ")) events.push(line.slice(6));
    }
  }
  return { status: res.status, events };
}

function openai(target: Target): OpenAI {
  return new OpenAI({
    apiKey: target.token,
    baseURL: `${target.server}/openai/${target.product}/v1`,
    dangerouslyAllowBrowser: true,
    maxRetries: 0,
  });
}

async function openaiUnary(target: Target, text: string): Promise<string | null> {
  const completion = await openai(target).chat.completions.create({
    model: target.model,
    messages: [{ role: "user", content: text }],
  });
  return completion.choices[0]?.message.content ?? null;
}

async function openaiStream(target: Target, text: string): Promise<string[]> {
  const stream = await openai(target).chat.completions.create({
    model: target.model,
    messages: [{ role: "user", content: text }],
    stream: true,
  });
  const deltas: string[] = [];
  for await (const chunk of stream) {
    const delta = chunk.choices[0]?.delta.content;
    if (delta) deltas.push(delta);
  }
  return deltas;
}

function anthropic(target: Target): Anthropic {
  return new Anthropic({
    apiKey: target.token,
    baseURL: `${target.server}/anthropic/${target.product}`,
    dangerouslyAllowBrowser: true,
    maxRetries: 0,
  });
}

/** The text blocks of a Message. */
async function anthropicUnary(target: Target, text: string): Promise<string[]> {
  const message = await anthropic(target).messages.create({
    model: target.model,
    max_tokens: 100,
    messages: [{ role: "user", content: text }],
  });
  return message.content.flatMap((block) => (block.type === "text" ? [block.text] : []));
}

/** The text deltas of a streamed Message, then its stop reason. */
async function anthropicStream(
  target: Target,
  text: string,
): Promise<{ deltas: string[]; stop: string | null }> {
  const stream = anthropic(target).messages.stream({
    model: target.model,
    max_tokens: 100,
    messages: [{ role: "user", content: text }],
  });
  const deltas: string[] = [];
  stream.on("text", (delta) => deltas.push(delta));
  const final = await stream.finalMessage();
  return { deltas, stop: final.stop_reason };
}

/** What a page reads of an Anthropic SDK error: the status, the error type and the message. */
async function anthropicError(target: Target, text: string): Promise<unknown> {
  try {
    await anthropicUnary(target, text);
    return { ok: true };
  } catch (err) {
    if (!(err instanceof Anthropic.APIError)) return { ok: false, name: String(err) };
    const body = err.error as { error?: { type?: string; message?: string } } | undefined;
    const status: unknown = err.status;
    return { ok: false, status, type: body?.error?.type, message: body?.error?.message };
  }
}

function transport(kind: "connect" | "grpc-web", target: Target): Transport {
  return kind === "connect"
    ? createConnectTransport({ baseUrl: target.server })
    : createGrpcWebTransport({ baseUrl: target.server });
}

async function rpc(
  kind: "connect" | "grpc-web",
  streaming: boolean,
  target: Target,
  text: string,
): Promise<RpcResult> {
  const client = createClient(ChatService, transport(kind, target));
  const request = create(ChatCompletionRequestSchema, {
    product: target.product,
    model: target.model,
    messages: [{ role: "user", content: { case: "text", value: text } }],
  });
  const headers = { authorization: `Bearer ${target.token}` };
  try {
    if (!streaming) {
      const answer = await client.createChatCompletion(request, { headers });
      return { ok: true, texts: answer.choices.map((c) => c.message?.content ?? "") };
    }
    const texts: string[] = [];
    for await (const chunk of client.streamChatCompletion(request, { headers })) {
      for (const choice of chunk.choices) if (choice.delta?.content) texts.push(choice.delta.content);
    }
    return { ok: true, texts };
  } catch (err) {
    const e = ConnectError.from(err);
    return { ok: false, code: String(e.code), message: e.message, rawMessage: e.rawMessage };
  }
}

export const clients = {
  restUnary,
  restStream,
  openaiUnary,
  openaiStream,
  anthropicUnary,
  anthropicStream,
  anthropicError,
  connectUnary: (target: Target, text: string) => rpc("connect", false, target, text),
  connectStream: (target: Target, text: string) => rpc("connect", true, target, text),
  grpcWebUnary: (target: Target, text: string) => rpc("grpc-web", false, target, text),
  grpcWebStream: (target: Target, text: string) => rpc("grpc-web", true, target, text),
};

export type Clients = typeof clients;

(globalThis as { clients?: Clients }).clients = clients;
