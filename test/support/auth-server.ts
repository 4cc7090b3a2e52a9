import { create, fromBinary, toBinary, type DescMessage, type MessageShape } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, type ConnectRouter } from "@connectrpc/connect";
import { createConnectTransport, Http2SessionManager } from "@connectrpc/connect-node";
import * as grpc from "@grpc/grpc-js";
import {
  ChatCompletionChunkSchema,
  ChatCompletionRequestSchema,
  ChatService,
  ListModelsRequestSchema,
  ListModelsResponseSchema,
} from "../../gen/apikeyserver/v1/chat_pb.js";
import { HealthService } from "../../gen/apikeyserver/v1/health_pb.js";
import {
  assertCanUseProduct,
  principalKey,
  signRequest,
  type Auth,
  type Principal,
} from "../../src/auth/index.js";
import { AppError, toConnectError } from "../../src/errors/index.js";
import { createServer } from "../../src/server.js";
import type { Secrets } from "../../src/secrets/types.js";
import { captureLog } from "./log-capture.js";

/** How a test call authenticates. */
export type Credentials =
  | { readonly kind: "none" }
  /** Sent as given (e.g. `authorization: Bearer ...`). */
  | { readonly kind: "headers"; readonly headers: Readonly<Record<string, string>> }
  /**
   * HMAC-signed by the client for the request it sends. `tamper` makes the signed part differ from the
   * sent one, as if an attacker changed the request after signing.
   */
  | {
      readonly kind: "hmac";
      readonly keyId: string;
      readonly secret: string;
      readonly timestamp?: number;
      readonly nonce?: string;
      readonly tamper?: "body" | "path" | "query";
    };

/** What a caller observed. `code` 0 is success; `message` is then the caller id the service saw. */
export interface Outcome {
  /** The HTTP status, for protocols where the caller sees one (not gRPC: always 200 there). */
  readonly status?: number;
  readonly code: Code | 0;
  readonly message: string;
}

export type AuthRpc = "ListModels" | "StreamChatCompletion" | "HealthCheck";

/**
 * One protocol of the test matrix. The REST transcoder adds one entry here: a `call` that sends
 * `GET /v1/chat/{product}/models` (or the `:stream` POST) with the credentials and reads status + body.
 */
export interface ProtocolClient {
  readonly name: string;
  call(rpc: AuthRpc, product: string, credentials: Credentials): Promise<Outcome>;
  close(): void;
}

/** The request a signature covers, before tampering. */
export interface SignTarget {
  readonly method: string;
  readonly path: string;
  readonly query: string;
  readonly body: Uint8Array | string;
}

/** Headers for the credentials, signing `target` (altered per `tamper`). */
export function credentialHeaders(credentials: Credentials, target: SignTarget): Record<string, string> {
  switch (credentials.kind) {
    case "none":
      return {};
    case "headers":
      return { ...credentials.headers };
    case "hmac": {
      const t = credentials.tamper;
      return signRequest({
        keyId: credentials.keyId,
        secret: credentials.secret,
        method: target.method,
        path: t === "path" ? `${target.path}x` : target.path,
        query: t === "query" ? `${target.query}&tampered=1` : target.query,
        body:
          t === "body"
            ? Buffer.concat([Buffer.from(target.body), Buffer.from([0x0a, 0x01, 0x78])])
            : target.body,
        ...(credentials.timestamp !== undefined ? { timestamp: credentials.timestamp } : {}),
        ...(credentials.nonce !== undefined ? { nonce: credentials.nonce } : {}),
      });
    }
    default: {
      const _never: never = credentials;
      return _never;
    }
  }
}

const methodNames = {
  ListModels: ["apikeyserver.v1.ChatService", "ListModels"],
  StreamChatCompletion: ["apikeyserver.v1.ChatService", "StreamChatCompletion"],
  HealthCheck: ["apikeyserver.v1.HealthService", "Check"],
} as const satisfies Record<AuthRpc, readonly [string, string]>;

function requestBytes(rpc: AuthRpc, product: string): Uint8Array {
  switch (rpc) {
    case "ListModels":
      return toBinary(ListModelsRequestSchema, create(ListModelsRequestSchema, { product }));
    case "StreamChatCompletion":
      return toBinary(ChatCompletionRequestSchema, chatRequest(product));
    case "HealthCheck":
      return new Uint8Array();
  }
}

function chatRequest(product: string): MessageShape<typeof ChatCompletionRequestSchema> {
  return create(ChatCompletionRequestSchema, { product, model: "echo-1" });
}

/**
 * gRPC and Connect sign POST /<service>/<method>, no query, and the request message as sent: here its
 * protobuf binary (the binary clients); the Connect JSON client signs its JSON body instead.
 */
function rpcTarget(rpc: AuthRpc, product: string): SignTarget {
  const [service, method] = methodNames[rpc];
  return { method: "POST", path: `/${service}/${method}`, query: "", body: requestBytes(rpc, product) };
}

const callerOf = (p: Principal): string => `${p.kind}:${p.id}`;

/**
 * A stand-in ChatService with the real descriptor: 404 for unknown products, then the 403 check of
 * SPEC S7, then an answer naming the caller the interceptor set.
 */
function routes(secrets: () => Secrets | undefined): (router: ConnectRouter) => void {
  const authorize = (product: string, principal: Principal | undefined): Principal => {
    try {
      if (secrets()?.products.has(product) !== true) throw new AppError("product_not_found");
      assertCanUseProduct(principal, product);
      return principal;
    } catch (err) {
      throw toConnectError(err);
    }
  };
  return (router) => {
    router.service(ChatService, {
      listModels(req, ctx) {
        const caller = callerOf(authorize(req.product, ctx.values.get(principalKey)));
        return { object: "list", data: [{ id: "echo-1", object: "model", ownedBy: caller }] };
      },
      createChatCompletion(req, ctx) {
        const caller = callerOf(authorize(req.product, ctx.values.get(principalKey)));
        return { id: caller, object: "chat.completion", model: req.model };
      },
      async *streamChatCompletion(req, ctx) {
        const caller = callerOf(authorize(req.product, ctx.values.get(principalKey)));
        yield await Promise.resolve(
          create(ChatCompletionChunkSchema, { id: caller, object: "chat.completion.chunk" }),
        );
      },
    });
    router.service(HealthService, {
      check: () => ({ status: "SERVING", version: "test", products: secrets()?.products.size ?? 0 }),
    });
  };
}

export interface AuthTestServer {
  /** h2c URL (gRPC, Connect over HTTP/2, REST over HTTP/2). One port: the same as `h1Url`. */
  readonly h2Url: string;
  /** HTTP/1.1 URL (Connect, REST). */
  readonly h1Url: string;
  close(): Promise<void>;
}

/** Largest REST request body the test server reads (as API_KEY_SERVER_MAX_BODY_BYTES would set it). */
const restMaxBodyBytes = 1024 * 1024;

/**
 * Starts the server on 127.0.0.1 port 0, built as src/app.ts builds it (createServer, src/server.ts), with
 * the given auth's interceptor in front of the test services and its precheck on both lanes, so every
 * protocol's calls run through the same checks.
 */
export async function startAuthTestServer(
  auth: Auth,
  secrets: () => Secrets | undefined,
): Promise<AuthTestServer> {
  const { logger } = captureLog("info");
  const server = createServer({
    logger,
    interceptors: [auth.interceptor],
    precheck: auth.precheck,
    limits: { bodyLimitBytes: restMaxBodyBytes },
    routes: routes(secrets),
    accessLog: { gcpProjectId: undefined },
    // Large header limits so the oversized-token case reaches the interceptor instead of the server's 431.
    maxHeaderBytes: 256 * 1024,
  });
  const { port } = await server.listen(0, "127.0.0.1");
  const url = `http://127.0.0.1:${port}`;
  return { h2Url: url, h1Url: url, close: async () => void (await server.close(0)) };
}

function fromConnectError(err: unknown): Outcome {
  const e = ConnectError.from(err);
  return { code: e.code, message: e.rawMessage };
}

/** Connect protocol over HTTP/1.1 with plain fetch and JSON, so the HTTP status is observable. */
export function connectFetchClient(server: AuthTestServer): ProtocolClient {
  const codes: Record<string, Code> = Object.fromEntries(
    Object.entries(Code)
      .filter((e): e is [string, Code] => typeof e[1] === "number")
      .map(([name, code]) => [
        name.replace(/[A-Z]/g, (c, i: number) => (i === 0 ? "" : "_") + c.toLowerCase()),
        code,
      ]),
  );
  return {
    name: "connect (HTTP/1.1, fetch)",
    async call(rpc, product, credentials) {
      if (rpc === "StreamChatCompletion") throw new Error("use a Connect client for streams");
      const sent = rpc === "HealthCheck" ? "{}" : JSON.stringify({ product });
      // Connect JSON signs the JSON bytes it sends.
      const target = { ...rpcTarget(rpc, product), body: sent };
      const res = await fetch(`${server.h1Url}${target.path}`, {
        method: "POST",
        headers: {
          "content-type": "application/json",
          "connect-protocol-version": "1",
          ...credentialHeaders(credentials, target),
        },
        body: sent,
      });
      const body = (await res.json()) as {
        code?: string;
        message?: string;
        data?: { owned_by?: string; ownedBy?: string }[];
        status?: string;
      };
      if (res.ok) {
        const model = body.data?.[0];
        return {
          status: res.status,
          code: 0,
          message: model?.owned_by ?? model?.ownedBy ?? body.status ?? "",
        };
      }
      return {
        status: res.status,
        code: codes[body.code ?? ""] ?? Code.Unknown,
        message: body.message ?? "",
      };
    },
    close() {},
  };
}

const codeOfStatusName: Readonly<Record<string, Code>> = Object.fromEntries(
  Object.entries(Code)
    .filter((e): e is [string, Code] => typeof e[1] === "number")
    .map(([name, code]) => [
      name.replace(/[A-Z]/g, (c, i: number) => (i === 0 ? "" : "_") + c).toUpperCase(),
      code,
    ]),
);

/** The REST request of each RPC (google.api.http in the .proto files), with its body. */
function restRequest(rpc: AuthRpc, product: string): { method: string; path: string; body: string } {
  switch (rpc) {
    case "ListModels":
      return { method: "GET", path: `/v1/chat/${product}/models`, body: "" };
    case "StreamChatCompletion":
      return {
        method: "POST",
        path: `/v1/chat/${product}:stream`,
        body: JSON.stringify({ model: "echo-1" }),
      };
    case "HealthCheck":
      return { method: "GET", path: "/health", body: "" };
  }
}

/**
 * REST over HTTP/1.1 with fetch, on the real routes: `GET /v1/chat/{product}/models`, the streaming
 * `POST /v1/chat/{product}:stream` (Server-Sent Events) and `GET /health`. HMAC signs exactly the method,
 * path, query and body bytes that are sent.
 */
export function restClient(server: AuthTestServer): ProtocolClient {
  return {
    name: "REST (HTTP/1.1, fetch)",
    async call(rpc, product, credentials) {
      const request = restRequest(rpc, product);
      const headers = credentialHeaders(credentials, { ...request, query: "" });
      const res = await fetch(`${server.h1Url}${request.path}`, {
        method: request.method,
        headers: request.body === "" ? headers : { ...headers, "content-type": "application/json" },
        ...(request.body === "" ? {} : { body: request.body }),
      });
      const text = await res.text();
      if (!res.ok) {
        const body = JSON.parse(text) as { error?: { status?: string; message?: string } };
        return {
          status: res.status,
          code: codeOfStatusName[body.error?.status ?? ""] ?? Code.Unknown,
          message: body.error?.message ?? "",
        };
      }
      if (rpc === "StreamChatCompletion") {
        expect200EventStream(res);
        const events = text.split("\n\n").filter((e) => e.trim() !== "");
        // A stream that finished ends with OpenAI's terminator, which carries no message.
        if (events.pop() !== "data: [DONE]") throw new Error("the stream did not end with data: [DONE]");
        const ids = events.map((e) => {
          if (!e.startsWith("data: ")) throw new Error(`unexpected SSE event: ${e}`);
          return (JSON.parse(e.slice("data: ".length)) as { id: string }).id;
        });
        return { status: res.status, code: 0, message: ids.join(",") };
      }
      const body = JSON.parse(text) as { data?: { owned_by?: string }[]; status?: string };
      return {
        status: res.status,
        code: 0,
        message: rpc === "ListModels" ? (body.data?.[0]?.owned_by ?? "") : (body.status ?? ""),
      };
    },
    close() {},
  };
}

function expect200EventStream(res: Response): void {
  const type = res.headers.get("content-type") ?? "";
  if (!type.startsWith("text/event-stream"))
    throw new Error(`stream answered ${type}, not text/event-stream`);
}

/** The Connect-ES client over HTTP/2 (binary), unary and server streaming. */
export function connectClient(server: AuthTestServer): ProtocolClient {
  const sessionManager = new Http2SessionManager(server.h2Url);
  const transport = createConnectTransport({
    baseUrl: server.h2Url,
    httpVersion: "2",
    useBinaryFormat: true,
    sessionManager,
  });
  const chat = createClient(ChatService, transport);
  const health = createClient(HealthService, transport);
  return {
    name: "connect (HTTP/2, Connect-ES client)",
    async call(rpc, product, credentials) {
      const headers = credentialHeaders(credentials, rpcTarget(rpc, product));
      try {
        switch (rpc) {
          case "ListModels": {
            const res = await chat.listModels({ product }, { headers });
            return { code: 0, message: res.data[0]?.ownedBy ?? "" };
          }
          case "StreamChatCompletion": {
            const ids: string[] = [];
            for await (const chunk of chat.streamChatCompletion(chatRequest(product), { headers }))
              ids.push(chunk.id);
            return { code: 0, message: ids.join(",") };
          }
          case "HealthCheck": {
            const res = await health.check({}, { headers });
            return { code: 0, message: res.status };
          }
        }
      } catch (err) {
        return fromConnectError(err);
      }
    },
    close() {
      sessionManager.abort();
    },
  };
}

/** A grpc-js method definition serialised with protobuf-es (no proto-loader). */
export function grpcMethod<I extends DescMessage, O extends DescMessage>(
  path: string,
  input: I,
  output: O,
  responseStream: boolean,
): grpc.MethodDefinition<MessageShape<I>, MessageShape<O>> {
  return {
    path,
    requestStream: false,
    responseStream,
    requestSerialize: (m) => Buffer.from(toBinary(input, m)),
    requestDeserialize: (b) => fromBinary(input, b),
    responseSerialize: (m) => Buffer.from(toBinary(output, m)),
    responseDeserialize: (b) => fromBinary(output, b),
  };
}

/** @grpc/grpc-js over h2c, messages (de)serialised with protobuf-es. */
export function grpcClient(server: AuthTestServer): ProtocolClient {
  const Client = grpc.makeGenericClientConstructor(
    {
      ListModels: grpcMethod(
        "/apikeyserver.v1.ChatService/ListModels",
        ListModelsRequestSchema,
        ListModelsResponseSchema,
        false,
      ),
      StreamChatCompletion: grpcMethod(
        "/apikeyserver.v1.ChatService/StreamChatCompletion",
        ChatCompletionRequestSchema,
        ChatCompletionChunkSchema,
        true,
      ),
    },
    "ChatService",
  );
  const client = new Client(server.h2Url.replace("http://", ""), grpc.credentials.createInsecure(), {
    "grpc.max_metadata_size": 256 * 1024,
  });
  const metadataOf = (headers: Record<string, string>): grpc.Metadata => {
    const md = new grpc.Metadata();
    for (const [k, v] of Object.entries(headers)) md.set(k, v);
    return md;
  };
  const failed = (err: grpc.ServiceError): Outcome => ({
    code: err.code as number,
    message: err.details,
  });
  type Unary = (
    req: unknown,
    md: grpc.Metadata,
    cb: (err: grpc.ServiceError | null, res?: unknown) => void,
  ) => void;
  type Streaming = (req: unknown, md: grpc.Metadata) => grpc.ClientReadableStream<unknown>;
  const methods = client as unknown as { ListModels: Unary; StreamChatCompletion: Streaming };
  return {
    name: "gRPC (@grpc/grpc-js, h2c)",
    call(rpc, product, credentials) {
      const md = metadataOf(credentialHeaders(credentials, rpcTarget(rpc, product)));
      switch (rpc) {
        case "ListModels":
          return new Promise((resolve) => {
            methods.ListModels.call(client, create(ListModelsRequestSchema, { product }), md, (err, res) => {
              if (err) return resolve(failed(err));
              const data = (res as MessageShape<typeof ListModelsResponseSchema>).data;
              resolve({ code: 0, message: data[0]?.ownedBy ?? "" });
            });
          });
        case "StreamChatCompletion":
          return new Promise((resolve) => {
            const ids: string[] = [];
            const stream = methods.StreamChatCompletion.call(client, chatRequest(product), md);
            stream.on("data", (chunk: MessageShape<typeof ChatCompletionChunkSchema>) => ids.push(chunk.id));
            stream.on("error", (err: grpc.ServiceError) => resolve(failed(err)));
            stream.on("end", () => resolve({ code: 0, message: ids.join(",") }));
          });
        case "HealthCheck":
          return Promise.reject(new Error("health is covered by the Connect clients"));
      }
    },
    close() {
      client.close();
    },
  };
}
