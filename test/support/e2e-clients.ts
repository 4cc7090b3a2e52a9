import { create, fromBinary, toBinary, type DescMessage } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, type Client } from "@connectrpc/connect";
import { findTrailerError } from "@connectrpc/connect/protocol-grpc";
import { createConnectTransport } from "@connectrpc/connect-node";
import * as grpc from "@grpc/grpc-js";
import {
  ChatCompletionChunkSchema,
  type ChatCompletionChunk,
  ChatCompletionRequestSchema,
  ChatCompletionSchema,
  ChatService,
  ListModelsRequestSchema,
  ListModelsResponseSchema,
} from "../../gen/apikeyserver/v1/chat_pb.js";
import { ErrorInfoSchema, RetryInfoSchema } from "../../gen/google/rpc/error_details_pb.js";
import { fromRestJson, toRestJson } from "../../src/json/index.js";

/** The three ways a caller reaches the chat RPCs. */
export type Protocol = "rest" | "connect" | "grpc";
export const protocols: readonly Protocol[] = ["rest", "connect", "grpc"];

/** gRPC code names as REST bodies spell them, by code number (identical for grpc-js and Connect). */
export const codeNames = [
  "OK",
  "CANCELLED",
  "UNKNOWN",
  "INVALID_ARGUMENT",
  "DEADLINE_EXCEEDED",
  "NOT_FOUND",
  "ALREADY_EXISTS",
  "PERMISSION_DENIED",
  "RESOURCE_EXHAUSTED",
  "FAILED_PRECONDITION",
  "ABORTED",
  "OUT_OF_RANGE",
  "UNIMPLEMENTED",
  "INTERNAL",
  "UNAVAILABLE",
  "DATA_LOSS",
  "UNAUTHENTICATED",
] as const;
export type CodeName = (typeof codeNames)[number];

/**
 * The outcome of one call, the same shape for every protocol. `status` is the HTTP status (REST only:
 * gRPC is always 200 and Connect's own mapping is not ours). `body` is the response as OpenAI JSON: the REST
 * body as received, or for Connect/gRPC the decoded message rendered by the REST writer. `raw` is every
 * byte of text the caller could see (body, error message and details), for leak checks.
 */
export interface Outcome {
  readonly status: number | undefined;
  readonly code: CodeName;
  readonly message: string;
  readonly body: unknown;
  /** Response headers and trailers, lower-case names (gRPC/Connect: metadata). */
  readonly headers: Readonly<Record<string, string>>;
  readonly raw: string;
  /** Connect/gRPC errors: the google.rpc.ErrorInfo reason (our AppErrorCode) and RetryInfo delay. */
  readonly reason?: string | undefined;
  readonly retryDelayMs?: number | undefined;
  /** Connect/gRPC errors: the ErrorInfo metadata (`param`, `hint`, `limit_bytes`, ...). */
  readonly errorMetadata?: Readonly<Record<string, string>> | undefined;
}

/** A server stream's outcome: the messages before the end, then how it ended. */
export interface StreamOutcome {
  readonly status: number | undefined;
  readonly messages: unknown[];
  /** OK, or the error that ended the stream (or refused it before the first message). */
  readonly end: {
    readonly code: CodeName;
    readonly message: string;
    readonly body?: unknown;
    /** Connect/gRPC: the ErrorInfo metadata of the error that ended the stream. */
    readonly errorMetadata?: Readonly<Record<string, string>> | undefined;
  };
  readonly headers: Readonly<Record<string, string>>;
  readonly raw: string;
  /** REST only: the stream's last event was `data: [DONE]` (OpenAI's terminator of a stream that finished). */
  readonly done?: boolean;
  /** Connect and gRPC only: the chunk messages themselves, as the protobuf caller got them. */
  readonly chunks?: readonly ChatCompletionChunk[];
}

export interface CallOptions {
  /** A full `authorization` header value; none is sent when undefined. */
  readonly authorization?: string | undefined;
  /** The caller's deadline (REST: `connect-timeout-ms` header; Connect: timeoutMs; gRPC: deadline). */
  readonly timeoutMs?: number;
  /** Aborting it cancels the call (REST: the fetch; Connect: the signal; gRPC: call.cancel()). */
  readonly signal?: AbortSignal;
}

export interface E2eClients {
  /** CreateChatCompletion with an OpenAI JSON body (the product goes in the path / the `product` field). */
  chat(
    protocol: Protocol,
    product: string,
    body: Record<string, unknown>,
    options?: CallOptions,
  ): Promise<Outcome>;
  stream(
    protocol: Protocol,
    product: string,
    body: Record<string, unknown>,
    options?: CallOptions,
  ): Promise<StreamOutcome>;
  listModels(protocol: Protocol, product: string, options?: CallOptions): Promise<Outcome>;
  close(): void;
}

const service = "apikeyserver.v1.ChatService";

/** Clients for a server at `http://127.0.0.1:PORT`: fetch (REST), connect-node over HTTP/1.1, grpc-js over h2c. */
export function createE2eClients(baseUrl: string): E2eClients {
  const connect: Client<typeof ChatService> = createClient(
    ChatService,
    createConnectTransport({ baseUrl, httpVersion: "1.1", jsonOptions: { ignoreUnknownFields: false } }),
  );
  const grpcClient = new grpc.Client(new URL(baseUrl).host, grpc.credentials.createInsecure());

  /** The request a protobuf client sends for an OpenAI JSON body: read as the REST layer reads it. */
  function requestOf(product: string, body: Record<string, unknown>) {
    return fromRestJson(ChatCompletionRequestSchema, { ...body, product });
  }

  function headersOf(options: CallOptions, extra: Record<string, string> = {}): Record<string, string> {
    return {
      ...extra,
      ...(options.authorization === undefined ? {} : { authorization: options.authorization }),
      ...(options.timeoutMs === undefined ? {} : { "connect-timeout-ms": String(options.timeoutMs) }),
    };
  }

  async function restCall(
    method: "GET" | "POST",
    path: string,
    body: Record<string, unknown> | undefined,
    options: CallOptions,
  ): Promise<Response> {
    return fetch(`${baseUrl}${path}`, {
      method,
      headers: headersOf(options, body === undefined ? {} : { "content-type": "application/json" }),
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      ...(options.signal === undefined ? {} : { signal: options.signal }),
    });
  }

  async function restOutcome(res: Response): Promise<Outcome> {
    const raw = await res.text();
    const body = parseJson(raw);
    const error = errorOf(body);
    return {
      status: res.status,
      code: error ? (error.status as CodeName) : "OK",
      message: error ? error.message : "",
      body,
      headers: Object.fromEntries(res.headers),
      raw,
    };
  }

  function connectOptions(options: CallOptions, headers: Record<string, string>) {
    return {
      headers: headersOf({ authorization: options.authorization }),
      ...(options.timeoutMs === undefined ? {} : { timeoutMs: options.timeoutMs }),
      ...(options.signal === undefined ? {} : { signal: options.signal }),
      onHeader: (h: Headers) => h.forEach((v, k) => (headers[k] = v)),
      onTrailer: (h: Headers) => h.forEach((v, k) => (headers[k] = v)),
    };
  }

  function connectFailure(err: unknown, headers: Record<string, string>) {
    const e = ConnectError.from(err);
    e.metadata.forEach((v, k) => (headers[k] = v));
    return { code: codeNames[e.code], message: e.rawMessage, ...detailsOf(e) };
  }

  function grpcMetadata(options: CallOptions): grpc.Metadata {
    const md = new grpc.Metadata();
    if (options.authorization !== undefined) md.set("authorization", options.authorization);
    return md;
  }

  function grpcCallOptions(options: CallOptions): grpc.CallOptions {
    return options.timeoutMs === undefined ? {} : { deadline: new Date(Date.now() + options.timeoutMs) };
  }

  const serialize = (schema: DescMessage) => (m: never) => Buffer.from(toBinary(schema, m));
  const deserialize = (schema: DescMessage) => (b: Buffer) => fromBinary(schema, b);

  function grpcUnaryCall(
    method: string,
    input: DescMessage,
    output: DescMessage,
    message: unknown,
    options: CallOptions,
  ): Promise<Outcome> {
    return new Promise((resolve) => {
      const headers: Record<string, string> = {};
      const call = grpcClient.makeUnaryRequest(
        `/${service}/${method}`,
        serialize(input),
        deserialize(output),
        message as never,
        grpcMetadata(options),
        grpcCallOptions(options),
        (error, response) => {
          if (error) {
            Object.assign(headers, flatten(error.metadata));
            resolve({
              ...grpcDetails(error, headers),
              status: undefined,
              code: codeNames[error.code] ?? "UNKNOWN",
              message: decodeGrpcMessage(error.details),
              body: undefined,
              headers,
              raw: `${error.details}\n${JSON.stringify(headers)}`,
            });
            return;
          }
          const body = toRestJson(output, response as never);
          resolve({ status: undefined, code: "OK", message: "", body, headers, raw: JSON.stringify(body) });
        },
      );
      call.on("metadata", (md) => Object.assign(headers, flatten(md)));
      options.signal?.addEventListener("abort", () => call.cancel(), { once: true });
    });
  }

  return {
    async chat(protocol, product, body, options = {}) {
      switch (protocol) {
        case "rest":
          return restOutcome(await restCall("POST", `/v1/chat/${product}`, body, options));
        case "connect": {
          const headers: Record<string, string> = {};
          try {
            const message = await connect.createChatCompletion(
              requestOf(product, body),
              connectOptions(options, headers),
            );
            const json = toRestJson(ChatCompletionSchema, message);
            return {
              status: undefined,
              code: "OK",
              message: "",
              body: json,
              headers,
              raw: JSON.stringify(json),
            };
          } catch (err) {
            const f = connectFailure(err, headers);
            return {
              status: undefined,
              ...f,
              body: undefined,
              headers,
              raw: `${f.message}\n${JSON.stringify(headers)}`,
            };
          }
        }
        case "grpc":
          return grpcUnaryCall(
            "CreateChatCompletion",
            ChatCompletionRequestSchema,
            ChatCompletionSchema,
            requestOf(product, body),
            options,
          );
      }
    },

    async stream(protocol, product, body, options = {}) {
      switch (protocol) {
        case "rest": {
          const res = await restCall("POST", `/v1/chat/${product}:stream`, body, options);
          const raw = await res.text();
          const headers = Object.fromEntries(res.headers);
          if (!(res.headers.get("content-type") ?? "").startsWith("text/event-stream")) {
            const parsed = parseJson(raw);
            const error = errorOf(parsed);
            return {
              status: res.status,
              messages: [],
              end: error
                ? { code: error.status as CodeName, message: error.message, body: parsed }
                : { code: "UNKNOWN", message: raw },
              headers,
              raw,
            };
          }
          const messages: unknown[] = [];
          let end: StreamOutcome["end"] = { code: "OK", message: "" };
          const events = parseSse(raw);
          const last = events.at(-1);
          const done = last !== undefined && last.event === undefined && last.data === "[DONE]";
          if (done) events.pop();
          for (const event of events) {
            const data = parseJson(event.data);
            if (event.event === "error") {
              const error = errorOf(data);
              end = {
                code: (error?.status ?? "UNKNOWN") as CodeName,
                message: error?.message ?? "",
                body: data,
              };
              break;
            }
            messages.push(data);
          }
          return { status: res.status, messages, end, headers, raw, done };
        }
        case "connect": {
          const headers: Record<string, string> = {};
          const messages: unknown[] = [];
          const chunks: ChatCompletionChunk[] = [];
          let end: StreamOutcome["end"] = { code: "OK", message: "" };
          try {
            for await (const chunk of connect.streamChatCompletion(
              requestOf(product, body),
              connectOptions(options, headers),
            )) {
              chunks.push(chunk);
              messages.push(toRestJson(ChatCompletionChunkSchema, chunk));
            }
          } catch (err) {
            end = connectFailure(err, headers);
          }
          return {
            status: undefined,
            messages,
            chunks,
            end,
            headers,
            raw: `${JSON.stringify(messages)}\n${end.message}\n${JSON.stringify(headers)}`,
          };
        }
        case "grpc": {
          const headers: Record<string, string> = {};
          const messages: unknown[] = [];
          const chunks: ChatCompletionChunk[] = [];
          const call = grpcClient.makeServerStreamRequest(
            `/${service}/StreamChatCompletion`,
            serialize(ChatCompletionRequestSchema),
            deserialize(ChatCompletionChunkSchema),
            requestOf(product, body) as never,
            grpcMetadata(options),
            grpcCallOptions(options),
          );
          options.signal?.addEventListener("abort", () => call.cancel(), { once: true });
          call.on("metadata", (md) => Object.assign(headers, flatten(md)));
          const end = await new Promise<StreamOutcome["end"]>((resolve) => {
            call.on("data", (chunk: ChatCompletionChunk) => {
              chunks.push(chunk);
              messages.push(toRestJson(ChatCompletionChunkSchema, chunk));
            });
            call.on("error", (error: grpc.ServiceError) => {
              Object.assign(headers, flatten(error.metadata));
              const { errorMetadata } = grpcDetails(error, headers);
              resolve({
                code: codeNames[error.code] ?? "UNKNOWN",
                message: decodeGrpcMessage(error.details),
                ...(errorMetadata === undefined ? {} : { errorMetadata }),
              });
            });
            call.on("status", (status: grpc.StatusObject) => {
              if (status.code === grpc.status.OK) {
                Object.assign(headers, flatten(status.metadata));
                resolve({ code: "OK", message: "" });
              }
            });
          });
          return {
            status: undefined,
            messages,
            chunks,
            end,
            headers,
            raw: `${JSON.stringify(messages)}\n${end.message}\n${JSON.stringify(headers)}`,
          };
        }
      }
    },

    async listModels(protocol, product, options = {}) {
      switch (protocol) {
        case "rest":
          return restOutcome(await restCall("GET", `/v1/chat/${product}/models`, undefined, options));
        case "connect": {
          const headers: Record<string, string> = {};
          try {
            const message = await connect.listModels({ product }, connectOptions(options, headers));
            const json = toRestJson(ListModelsResponseSchema, message);
            return {
              status: undefined,
              code: "OK",
              message: "",
              body: json,
              headers,
              raw: JSON.stringify(json),
            };
          } catch (err) {
            const f = connectFailure(err, headers);
            return { status: undefined, ...f, body: undefined, headers, raw: f.message };
          }
        }
        case "grpc":
          return grpcUnaryCall(
            "ListModels",
            ListModelsRequestSchema,
            ListModelsResponseSchema,
            create(ListModelsRequestSchema, { product }),
            options,
          );
      }
    },

    close() {
      grpcClient.close();
    },
  };
}

/** `Code` re-exported for tests that compare with Connect's enum. */
export { Code };

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}

function errorOf(body: unknown): { code: number; status: string; message: string } | undefined {
  if (typeof body !== "object" || body === null || !("error" in body)) return undefined;
  const error = body.error;
  if (typeof error !== "object" || error === null) return undefined;
  return error as { code: number; status: string; message: string };
}

/**
 * grpc-js decodes `grpc-message` with decodeURI, which leaves reserved characters encoded, while
 * connect-es encodes it with encodeURIComponent: a grpc-js caller sees `messages%3A must ...`. The gRPC spec
 * says any `%XX` is to be decoded (grpc-go, grpc-java do), so the outcome shows what a conforming client
 * shows; the raw grpc-js text stays in `raw`.
 */
function decodeGrpcMessage(details: string): string {
  try {
    return decodeURIComponent(details);
  } catch {
    return details;
  }
}

function detailsOf(error: ConnectError): {
  reason?: string;
  retryDelayMs?: number;
  errorMetadata?: Record<string, string>;
} {
  const info = error.findDetails(ErrorInfoSchema)[0];
  const retry = error.findDetails(RetryInfoSchema)[0]?.retryDelay;
  return {
    ...(info === undefined ? {} : { reason: info.reason, errorMetadata: { ...info.metadata } }),
    ...(retry === undefined ? {} : { retryDelayMs: Number(retry.seconds) * 1000 + retry.nanos / 1e6 }),
  };
}

/** The rich error details grpc-js leaves in `grpc-status-details-bin`, read with connect's own parser. */
function grpcDetails(error: grpc.ServiceError, headers: Record<string, string>) {
  const trailer = new Headers({ "grpc-status": String(error.code), "grpc-message": "x" });
  const bin = headers["grpc-status-details-bin"];
  if (bin === undefined) return {};
  trailer.set("grpc-status-details-bin", bin);
  const parsed = findTrailerError(trailer);
  return parsed === undefined ? {} : detailsOf(parsed);
}

function flatten(md: grpc.Metadata): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(md.getMap())) out[k] = typeof v === "string" ? v : v.toString("base64");
  return out;
}

/** Server-Sent Events as sent by the REST transcoder: blocks separated by a blank line. */
export function parseSse(text: string): { event: string | undefined; data: string }[] {
  return text
    .split("\n\n")
    .filter((block) => block.trim() !== "")
    .map((block) => {
      let event: string | undefined;
      const data: string[] = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) event = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
      }
      return { event, data: data.join("\n") };
    });
}

/** A provider key nobody would write by accident (the same canary as the upstream unit tests). */
export const canaryKey = "sk-canary-7fJ2mQ9xLw4RtYb8NvKp3ZQzX7";
/** The canary and its first and last four characters: none may appear in any response, header or log line. */
export const canaryPieces = [canaryKey, canaryKey.slice(0, 4), canaryKey.slice(-4)] as const;

/**
 * The product secret of the end-to-end tests: `product-dev` as in the runbook (openai at the mock provider
 * with the canary key, plus echo), `product-capped` with a lower max_tokens cap, `product-other` that the
 * default caller may not use.
 */
export function e2eProducts(mockUrl: string, cap = 100): Record<string, unknown> {
  const openai = { api_key: canaryKey, base_url: `${mockUrl}/v1`, models: ["gpt-4o", "gpt-4o-mini"] };
  return {
    "product-dev": { providers: { openai, echo: { models: ["echo-1"] } } },
    "product-capped": { max_tokens: cap, providers: { openai } },
    "product-other": { providers: { echo: { models: ["echo-1"] } } },
  };
}

/**
 * OpenAI's stream chunks as the server relays them over REST and the OpenAI surface: field for field,
 * `"usage": null` and the first delta's `"refusal": null` included (ChunkDelta.refusal is
 * JSON_PRESENCE_NULL_WHEN_EMPTY, README "Streams over REST"). A copy, so a test cannot change the fixture.
 */
export function relayedChunks(chunks: readonly Record<string, unknown>[]): Record<string, unknown>[] {
  return structuredClone(chunks) as Record<string, unknown>[];
}
