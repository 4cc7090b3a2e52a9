// The request each target receives for a scenario: the same chat call (one user message, "Hello", for
// gpt-4o-mini) in the shape of each surface. gRPC bodies come from the generated code (gen/, compiled).
import { Buffer } from "node:buffer";
import type { ChatPb } from "./harness.ts";
import { encodeChatRequest, grpcFrame } from "./harness.ts";
import type { PeerRequestContext } from "./peer.ts";
import { peerRequest } from "./peer.ts";
import type { Scenario } from "./scenarios.ts";
import { SSE_CHUNKS, SSE_SPREAD_MS } from "./scenarios.ts";

/** The mock's path prefix for sse-<n>: SSE_CHUNKS content chunks spread over SSE_SPREAD_MS. */
export const SSE_MOCK_PREFIX = `/chunks/${SSE_CHUNKS}/delay/${SSE_SPREAD_MS}`;

/** What every target is measured as: the floor, the server, the server without metrics, the peer gateway. */
export type TargetKind = "floor" | "server" | "bare" | "peer";

export interface BenchRequest {
  /** The URL path on the target. */
  path: string;
  body: Uint8Array;
  /** Extra headers; content-type is application/json unless set here. */
  headers: Record<string, string>;
}

/** The mock's fixed answer (bench/lib/mock-provider.mjs): a pre-flight call must get exactly this back. */
export const EXPECTED_ANSWER = "Hello! How can I help you today?";

export const MODEL = "gpt-4o-mini";
const MESSAGES = [{ role: "user", content: "Hello" }];
/** The same messages in Connect JSON: protobuf's canonical form, where `content` is the typed `text` member. */
const CONNECT_MESSAGES = [{ role: "user", text: "Hello" }];
export const CHAT_PATH = "/apikeyserver.v1.ChatService/CreateChatCompletion";

export interface RequestContext {
  /** The server's JWT (ES256, products bench, bench-slow and bench-sse). */
  token: string;
  /** The generated chat.proto code; needed only for gRPC scenarios on the server. */
  pb: ChatPb | undefined;
  /** How the peer gateway reaches the mock; needed only for peer targets. */
  peer: PeerRequestContext | undefined;
}

const json = (value: unknown): Buffer => Buffer.from(JSON.stringify(value));

/** The OpenAI request body the floor and the peer forward to the mock. */
export function openAiBody(scenario: Scenario): Buffer {
  return json({
    model: MODEL,
    messages: MESSAGES,
    ...(scenario.api === "rest-stream" || scenario.api === "sse" ? { stream: true } : {}),
  });
}

export function requestFor(target: TargetKind, scenario: Scenario, context: RequestContext): BenchRequest {
  const auth = `Bearer ${context.token}`;
  // sse-<n>: the mock sends SSE_CHUNKS content chunks over SSE_SPREAD_MS (product bench-sse, the same prefix).
  const delayPrefix =
    scenario.api === "sse" ? SSE_MOCK_PREFIX : scenario.delayMs > 0 ? `/delay/${scenario.delayMs}` : "";
  const product = scenario.api === "sse" ? "bench-sse" : scenario.delayMs > 0 ? "bench-slow" : "bench";
  if (target === "floor") {
    return {
      path: `${delayPrefix}/v1/chat/completions`,
      body: openAiBody(scenario),
      headers: { authorization: auth },
    };
  }
  if (target === "peer") {
    if (context.peer === undefined) throw new Error("a peer request needs the peer's context");
    return peerRequest(context.peer, scenario, openAiBody(scenario));
  }
  switch (scenario.api) {
    case "rest":
      return {
        path: `/v1/chat/${product}`,
        body: json({ model: MODEL, messages: MESSAGES }),
        headers: { authorization: auth },
      };
    case "sse":
      return {
        path: `/v1/chat/${product}:stream`,
        body: json({ model: MODEL, messages: MESSAGES, stream: true }),
        headers: { authorization: auth },
      };
    case "rest-stream":
      return {
        path: `/v1/chat/${product}:stream`,
        body: json({ model: MODEL, messages: MESSAGES }),
        headers: { authorization: auth },
      };
    case "connect":
      return {
        path: CHAT_PATH,
        body: json({ product, model: MODEL, messages: CONNECT_MESSAGES }),
        headers: { authorization: auth, "connect-protocol-version": "1" },
      };
    case "grpc":
      if (context.pb === undefined) throw new Error("a gRPC request needs the generated code (dist/gen)");
      return {
        path: CHAT_PATH,
        body: grpcFrame(encodeChatRequest(context.pb, product, MODEL, "Hello")),
        headers: { authorization: auth, "content-type": "application/grpc", te: "trailers" },
      };
  }
}
