/**
 * Runs in the browser (bundled at test time by test/support/browser.ts): each web client the README names,
 * as a page on another origin would use it. Every function returns plain JSON for the test to assert on.
 * Written against what both Node and the DOM have (fetch, streams, TextDecoder), so the repository's
 * TypeScript settings check it without the DOM library.
 */
import { create } from "@bufbuild/protobuf";
import { ConnectError, createClient, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcWebTransport } from "@connectrpc/connect-web";
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
  connectUnary: (target: Target, text: string) => rpc("connect", false, target, text),
  connectStream: (target: Target, text: string) => rpc("connect", true, target, text),
  grpcWebUnary: (target: Target, text: string) => rpc("grpc-web", false, target, text),
  grpcWebStream: (target: Target, text: string) => rpc("grpc-web", true, target, text),
};

export type Clients = typeof clients;

(globalThis as { clients?: Clients }).clients = clients;
