import type { IncomingHttpHeaders, OutgoingHttpHeaders } from "node:http";
import { type ConnectError, type HandlerContext, type ServiceImpl } from "@connectrpc/connect";
import type { ChatService } from "../../../gen/apikeyserver/v1/chat_pb.js";
import { chatMethods } from "../chat-methods.js";
import type { InProcessCall } from "../../call/in-process-call.js";
import type { CallPipeline, CallWire, Decoded, MethodSpec } from "../../call/pipeline.js";
import { readRequestBody } from "../../call/read-body.js";
import { isRequestTooLarge } from "../../call/wire-error.js";
import { headerValue } from "../../compat/node-headers.js";
import type { EdgeEntry, Exchange } from "../../edge/exchange.js";
import { AppError, toConnectError } from "../../errors/index.js";
import { callError, copyHeaders, sendError, sendJson } from "../http-write.js";
import { checkJsonContentType } from "../request-body.js";
import { sseEvent, writeSse } from "../sse.js";
import { anthropicErrorFromConnect } from "./anthropic-error.js";
import type { Messages, MessagesRequest } from "./messages.js";
import { scanTopLevel } from "./top-level.js";

export interface AnthropicEdgeOptions {
  /** The ChatService implementation the router serves: its methods name the calls for auth and metrics. */
  readonly chat: ServiceImpl<typeof ChatService>;
  /** The Messages API calls (src/protocols/anthropic/messages.ts). */
  readonly messages: Messages;
  readonly pipeline: CallPipeline;
  /** Largest request body on this surface; default 32 MiB, Anthropic's own request limit. */
  readonly maxBodyBytes?: number;
}

/** Anthropic's own request size limit, this surface's default (README, "Anthropic Messages API"). */
export const anthropicMaxBodyBytes = 32 * 1024 * 1024;

const prefix = "/anthropic/";
const name = "Anthropic surface";

type Endpoint =
  | { readonly kind: "messages" }
  | { readonly kind: "count_tokens" }
  | { readonly kind: "models" }
  | { readonly kind: "model"; readonly model: string };

/**
 * The Anthropic Messages API surface (README, "Anthropic Messages API"), an edge entry answering every
 * request under `/anthropic/`: each product's base URL is `<server>/anthropic/<product>`, so Claude Code
 * (`ANTHROPIC_BASE_URL`) and the Anthropic SDKs (`baseURL`) work unchanged. `POST /v1/messages` (the
 * `beta=true` query accepted), `POST /v1/messages/count_tokens`, `GET /v1/models` and `GET
 * /v1/models/{id}`, on the one call pipeline (auth, then the chat core's steps), answered in Anthropic's
 * shapes: JSON, Anthropic's event stream, `{"type": "error", "error": {...}}` with the README's statuses,
 * and a `request-id` header on every answer. The caller's JWT may come as `Authorization: Bearer` or as
 * `x-api-key`; both at once is 400, as any ambiguous credentials.
 */
export function createAnthropicEdge(options: AnthropicEdgeOptions): EdgeEntry {
  const { pipeline, messages } = options;
  const maxBodyBytes = options.maxBodyBytes ?? anthropicMaxBodyBytes;
  const { unary, stream, models } = chatMethods("createAnthropicEdge", options.chat);

  async function decodeMessages(
    exchange: Exchange,
    product: string,
    bytes: Uint8Array,
    count: boolean,
  ): Promise<Decoded> {
    checkJsonContentType(exchange.req.headers);
    const keys = await scanTopLevel(bytes);
    if (typeof keys.model !== "string" || keys.model === "") {
      throw new AppError("invalid_argument", { message: 'Missing required field "model"', param: "model" });
    }
    const streaming = !count && keys.stream === true;
    if (keys.stream !== undefined && typeof keys.stream !== "boolean") {
      throw new AppError("invalid_argument", {
        message: 'Invalid value for field "stream"',
        param: "stream",
      });
    }
    let maxTokens: number | undefined;
    if (!count) {
      if (keys.max_tokens === undefined) {
        throw new AppError("invalid_argument", {
          message: 'Missing required field "max_tokens"',
          param: "max_tokens",
        });
      }
      if (typeof keys.max_tokens !== "number" || !Number.isInteger(keys.max_tokens)) {
        throw new AppError("invalid_argument", {
          message: 'Invalid value for field "max_tokens"',
          param: "max_tokens",
        });
      }
      maxTokens = keys.max_tokens;
    }
    const request: MessagesRequest = {
      product,
      body: bytes,
      model: keys.model,
      stream: streaming,
      maxTokens,
      query: exchange.query,
      headers: anthropicHeaders(exchange.req.headers),
    };
    if (count) return { request, unary: messages.countTokens, spec: unary.spec };
    exchange.rpc = streaming ? stream.rpc : unary.rpc;
    return streaming
      ? { request, stream: messages.stream, spec: stream.spec }
      : { request, unary: messages.create, spec: unary.spec };
  }

  function callOf(exchange: Exchange, product: string, endpoint: Endpoint): CallWire {
    if (endpoint.kind === "models" || endpoint.kind === "model") {
      exchange.rpc = models.rpc;
      const id = endpoint.kind === "model" ? endpoint.model : undefined;
      return wireOf(exchange, models.spec, models.url, maxBodyBytes, () => ({
        request: product,
        unary: (p: string, ctx: HandlerContext) => Promise.resolve(messages.models(p, id, ctx)),
        spec: models.spec,
      }));
    }
    exchange.rpc = unary.rpc;
    const count = endpoint.kind === "count_tokens";
    return wireOf(exchange, unary.spec, unary.url, maxBodyBytes, (bytes) =>
      decodeMessages(exchange, product, bytes, count),
    );
  }

  return (next) => (exchange) => {
    if (!exchange.path.startsWith(prefix)) {
      next(exchange);
      return;
    }
    exchange.protocol = "anthropic";
    // Anthropic's SDKs read the id of a request from `request-id` (x-request-id is set for every answer).
    exchange.res.setHeader("request-id", exchange.requestId);
    let target: { product: string; endpoint: Endpoint };
    try {
      target = route(exchange);
    } catch (thrown) {
      pipeline.refuse(exchange, thrown, (err) =>
        sendError(exchange.req, exchange.res, anthropicErrorFromConnect(err)),
      );
      return;
    }
    void pipeline.run(exchange, callOf(exchange, target.product, target.endpoint));
  };
}

const forwardedHeaders = ["anthropic-version", "anthropic-beta"] as const;

/** The caller's Anthropic protocol headers that go upstream on the native path (never its credential). */
function anthropicHeaders(headers: IncomingHttpHeaders): Record<string, string> {
  const out: Record<string, string> = {};
  for (const header of forwardedHeaders) {
    const value = headerValue(headers[header]);
    if (value !== undefined) out[header] = value;
  }
  return out;
}

/**
 * The headers the interceptors see: the tracing and HMAC headers, `user-agent`, and the caller's JWT as
 * `authorization` whether it came as `Authorization: Bearer` or as `x-api-key` (Claude Code with
 * ANTHROPIC_API_KEY); both, or `x-api-key` twice, is the refusal returned beside them.
 */
function requestHeadersOf(exchange: Exchange): { header: Record<string, string>; refusal?: ConnectError } {
  const { headers, rawHeaders } = exchange.req;
  const header: Record<string, string> = {};
  for (const key in headers) {
    if (key === "x-api-key") continue;
    const keep =
      key === "authorization" ||
      key === "traceparent" ||
      key === "tracestate" ||
      key === "user-agent" ||
      (key.charCodeAt(0) === 120 /* x */ && key.charCodeAt(1) === 45); /* - */
    if (!keep) continue;
    const value = headerValue(headers[key]);
    if (value !== undefined) header[key] = value;
  }
  let apiKeys = 0;
  for (let i = 0; i < rawHeaders.length; i += 2) if (rawHeaders[i]?.toLowerCase() === "x-api-key") apiKeys++;
  const apiKey = headerValue(headers["x-api-key"]);
  if (apiKeys > 1 || (apiKey !== undefined && header["authorization"] !== undefined)) {
    const message =
      apiKeys > 1
        ? "Ambiguous credentials (the x-api-key header is sent more than once)"
        : "Ambiguous credentials (both an Authorization header and an x-api-key header are sent)";
    return { header, refusal: toConnectError(new AppError("invalid_argument", { message })) };
  }
  if (apiKey !== undefined) header["authorization"] = `Bearer ${apiKey}`;
  return { header };
}

/** The event that ends a stream failing after it started, in Anthropic's shape. */
function errorFrame(err: ConnectError): string {
  return sseEvent(anthropicErrorFromConnect(err).body, "error");
}

/**
 * The CallWire of one call of the surface: the body read up to the surface's limit (413), the HTTP
 * request as signed (method, path, query, raw body: docs/auth.md), the body never decoded whole here
 * (`raw`: the decode reads a few top-level keys), answers as JSON, streams as Anthropic's events (each
 * message of the stream is its frames, already framed), errors in Anthropic's shape; a stream failing
 * after it started ends with `event: error`.
 */
function wireOf(
  exchange: Exchange,
  spec: MethodSpec,
  url: string,
  maxBodyBytes: number,
  decode: (bytes: Uint8Array) => Decoded | Promise<Decoded>,
): CallWire {
  const { header, refusal } = requestHeadersOf(exchange);
  let decoded: Decoded | undefined;
  const fail = (opened: InProcessCall, err: ConnectError, unaryCall: boolean): void => {
    const { req, res } = exchange;
    if (res.headersSent) {
      if (!res.writableEnded) res.end(errorFrame(err));
      return;
    }
    sendError(
      req,
      res,
      callError(err, opened.context, unaryCall, anthropicErrorFromConnect),
      isRequestTooLarge(err),
    );
  };
  return {
    name,
    spec,
    init: { protocolName: exchange.protocol, url, requestHeader: header, timeoutMs: undefined },
    refusal,
    signed: { method: exchange.method, path: exchange.path, query: exchange.query },
    format: "raw",
    read: () => readRequestBody(exchange.req, maxBodyBytes),
    message: (body) => body,
    async decode(bytes) {
      decoded = await decode(bytes);
      return decoded;
    },
    unary(opened, answer) {
      const { context } = opened;
      const headers: OutgoingHttpHeaders = copyHeaders(
        context.responseTrailer,
        copyHeaders(context.responseHeader, {}),
      );
      sendJson(exchange.res, 200, answer as string, headers);
    },
    async stream(opened, messages) {
      const { context } = opened;
      const { res } = exchange;
      let next: IteratorResult<unknown>;
      try {
        next = await messages.next();
      } catch (err) {
        // An error before the first event (authentication, limits, the provider's refusal) is an answer.
        fail(opened, err as ConnectError, false);
        return;
      }
      await writeSse(
        res,
        copyHeaders(context.responseHeader, {}),
        next,
        messages,
        // Each message of the stream is its frames, already framed (src/protocols/anthropic/messages.ts).
        { frame: (frames) => frames as string, errorFrame },
        context.signal,
      );
    },
    error(opened, err) {
      fail(opened, err, (decoded?.spec ?? spec).kind === "unary");
    },
  };
}

/** The product and endpoint of a path under `/anthropic/` (404, 405 with `Allow`). */
function route(exchange: Exchange): { product: string; endpoint: Endpoint } {
  const { path } = exchange;
  const slash = path.indexOf("/", prefix.length);
  const product = slash < 0 ? undefined : decode(path.slice(prefix.length, slash));
  const rest = slash < 0 ? "" : path.slice(slash);
  let endpoint: Endpoint | undefined;
  if (rest === "/v1/messages") endpoint = { kind: "messages" };
  else if (rest === "/v1/messages/count_tokens") endpoint = { kind: "count_tokens" };
  else if (rest === "/v1/models") endpoint = { kind: "models" };
  else if (rest.startsWith("/v1/models/")) {
    const model = decode(rest.slice("/v1/models/".length));
    if (model !== undefined && model !== "") endpoint = { kind: "model", model };
  }
  if (product === undefined || product === "" || endpoint === undefined)
    throw new AppError("route_not_found");
  const allowed = endpoint.kind === "messages" || endpoint.kind === "count_tokens" ? "POST" : "GET";
  if (exchange.method !== allowed) throw new AppError("method_not_allowed", { headers: { allow: allowed } });
  return { product, endpoint };
}

function decode(segment: string): string | undefined {
  try {
    return decodeURIComponent(segment);
  } catch {
    return undefined;
  }
}
