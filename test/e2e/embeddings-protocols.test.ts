import { create, fromBinary, fromJson, toBinary } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import { ListValueSchema } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createAsyncIterable } from "@connectrpc/connect/protocol";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  CreateEmbeddingsRequestSchema,
  CreateEmbeddingsResponseSchema,
  EmbeddingService,
  type CreateEmbeddingsRequest,
  type CreateEmbeddingsResponse,
} from "../../gen/apikeyserver/v1/embeddings_pb.js";
import * as reflection from "../../gen/grpc/reflection/v1/reflection_pb.js";
import { startApp, type AppHarness } from "../support/app-harness.js";
import { canaryKey, canaryPieces } from "../support/e2e-clients.js";
import { behaviors, startMockProvider, type MockProvider } from "../support/mock-provider.js";
import { base64Of, embeddingsBehavior, mockVector } from "../support/mock-embeddings.js";
import { transportCases, transportOf } from "../support/transports.js";

// EmbeddingService.CreateEmbeddings on every protocol the server speaks: gRPC, gRPC-Web and Connect
// (connect-node's clients, test/support/transports.ts), REST `POST /v1/embeddings/{product}` (OpenAI's JSON
// shape), with the same checks, errors and access line as on the OpenAI surface.

let mock: MockProvider;
let app: AppHarness;
let token: string;
const seen: string[] = [];

beforeAll(async () => {
  mock = await startMockProvider(embeddingsBehavior());
  app = await startApp({
    products: {
      "product-dev": {
        providers: {
          openai: { api_key: canaryKey, base_url: `${mock.url}/v1`, models: ["text-embedding-3-small"] },
          anthropic: { api_key: canaryKey, base_url: mock.url, models: ["claude-sonnet-4-5"] },
          echo: { models: ["echo-embed"] },
        },
      },
    },
  });
  token = await app.token();
});
afterAll(async () => {
  await app.close();
  await mock.close();
});

const items = (values: unknown[]) => fromJson(ListValueSchema, values as never);

function client(name: (typeof transportCases)[number]["name"]) {
  return createClient(EmbeddingService, transportOf(name, app.url));
}

async function rpcFailure(call: Promise<unknown>): Promise<ConnectError> {
  const err = await call.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(ConnectError);
  const connectErr = err as ConnectError;
  seen.push(connectErr.rawMessage, JSON.stringify([...connectErr.metadata]));
  return connectErr;
}

describe.each(transportCases.map((c) => c.name))("CreateEmbeddings over %s", (name) => {
  it("a batch of texts: float vectors in order, usage, the access line names the surface", async () => {
    const answer = await client(name).createEmbeddings(
      { product: "product-dev", model: "echo-embed", input: { case: "items", value: items(["a", "b"]) } },
      { headers: { authorization: `Bearer ${token}` } },
    );
    seen.push(JSON.stringify(answer));
    expect(answer.object).toBe("list");
    expect(answer.model).toBe("echo-embed");
    expect(answer.data.map((d) => d.index)).toEqual([0, 1]);
    for (const d of answer.data) {
      expect(d.embedding.case).toBe("floats");
      if (d.embedding.case === "floats") expect(d.embedding.value.values).toHaveLength(256);
    }
    expect(answer.usage?.promptTokens).toBeGreaterThan(0);
    const line = app.logs
      .records()
      .findLast((r) => r["rpc"] === "apikeyserver.v1.EmbeddingService/CreateEmbeddings");
    expect(line).toMatchObject({ surface: "embeddings", model: "echo-embed", product: "product-dev" });
  });

  it("base64 from an OpenAI provider: the provider's string, decoding to its vector", async () => {
    const answer = await client(name).createEmbeddings(
      {
        product: "product-dev",
        model: "text-embedding-3-small",
        input: { case: "text", value: "Hello" },
        encodingFormat: "base64",
        dimensions: 3,
      },
      { headers: { authorization: `Bearer ${token}` } },
    );
    expect(mock.requests.at(-1)?.body).toEqual({
      model: "text-embedding-3-small",
      input: "Hello",
      dimensions: 3,
      encoding_format: "base64",
    });
    expect(answer.data[0]?.embedding).toEqual({ case: "base64", value: base64Of(mockVector(0, 3)) });
    expect(answer.usage).toMatchObject({ promptTokens: 5, totalTokens: 5 });
  });

  it.each([
    [
      "anthropic",
      "claude-sonnet-4-5",
      { case: "text", value: "a" },
      Code.InvalidArgument,
      "Model not supported",
    ],
    ["no input", "echo-embed", { case: undefined }, Code.InvalidArgument, 'Missing required field "input"'],
    [
      "mixed items",
      "echo-embed",
      { case: "items", value: items(["a", [1]]) },
      Code.InvalidArgument,
      "input: must be a string, an array of strings",
    ],
  ] as const)("refused (%s): %s", async (_what, model, input, code, message) => {
    const err = await rpcFailure(
      client(name).createEmbeddings(
        create(CreateEmbeddingsRequestSchema, { product: "product-dev", model, input: input as never }),
        { headers: { authorization: `Bearer ${token}` } },
      ),
    );
    expect(err.code).toBe(code);
    expect(err.rawMessage).toContain(message);
  });

  it("without credentials: UNAUTHENTICATED Unauthorized", async () => {
    const err = await rpcFailure(
      client(name).createEmbeddings({
        product: "product-dev",
        model: "echo-embed",
        input: { case: "text", value: "a" },
      }),
    );
    expect(err.code).toBe(Code.Unauthenticated);
    expect(err.rawMessage).toBe("Unauthorized");
  });

  it("a provider 5xx: UNAVAILABLE Upstream service error, the key nowhere", async () => {
    mock.setBehavior(behaviors.json(503, { error: { message: `down for ${canaryKey}` } }));
    try {
      const err = await rpcFailure(
        client(name).createEmbeddings(
          { product: "product-dev", model: "text-embedding-3-small", input: { case: "text", value: "a" } },
          { headers: { authorization: `Bearer ${token}` } },
        ),
      );
      expect(err.code).toBe(Code.Unavailable);
      expect(err.rawMessage).toBe("Upstream service error");
    } finally {
      mock.setBehavior(embeddingsBehavior());
    }
  });
});

describe("@grpc/grpc-js, the reference gRPC client", () => {
  it("CreateEmbeddings: vectors, and an error's status and message", async () => {
    const client = new grpc.Client(new URL(app.url).host, grpc.credentials.createInsecure());
    const request = (model: string) =>
      create(CreateEmbeddingsRequestSchema, {
        product: "product-dev",
        model,
        input: { case: "text", value: "grpc-js" },
        dimensions: 16,
      });
    const call = (model: string) =>
      new Promise<CreateEmbeddingsResponse>((resolve, reject) => {
        const md = new grpc.Metadata();
        md.set("authorization", `Bearer ${token}`);
        client.makeUnaryRequest(
          "/apikeyserver.v1.EmbeddingService/CreateEmbeddings",
          (m: CreateEmbeddingsRequest) => Buffer.from(toBinary(CreateEmbeddingsRequestSchema, m)),
          (b: Buffer) => fromBinary(CreateEmbeddingsResponseSchema, b),
          request(model),
          md,
          (err, res) => (err || res === undefined ? reject(err ?? new Error("no answer")) : resolve(res)),
        );
      });
    try {
      const answer = await call("echo-embed");
      expect(answer.data).toHaveLength(1);
      const vector = answer.data[0]?.embedding;
      expect(vector?.case === "floats" ? vector.value.values.length : 0).toBe(16);
      const err = (await call("claude-sonnet-4-5").then(
        () => undefined,
        (e: unknown) => e,
      )) as grpc.ServiceError;
      expect(err.code).toBe(grpc.status.INVALID_ARGUMENT);
      expect(err.details).toBe("Model not supported");
    } finally {
      client.close();
    }
  });
});

describe("REST POST /v1/embeddings/{product}", () => {
  async function post(body: unknown, auth = `Bearer ${token}`) {
    const res = await fetch(`${app.url}/v1/embeddings/product-dev`, {
      method: "POST",
      headers: { authorization: auth, "content-type": "application/json" },
      body: JSON.stringify(body),
    });
    const text = await res.text();
    seen.push(text);
    return { status: res.status, json: JSON.parse(text) as Record<string, unknown> };
  }

  it("OpenAI's JSON in and out: a string, token ids, float and base64", async () => {
    const text = await post({ model: "text-embedding-3-small", input: "Hello", encoding_format: "float" });
    expect(text).toEqual({
      status: 200,
      json: {
        object: "list",
        data: [{ object: "embedding", index: 0, embedding: mockVector(0) }],
        model: "text-embedding-3-small",
        usage: { prompt_tokens: 5, total_tokens: 5 },
      },
    });
    const tokens = await post({
      model: "text-embedding-3-small",
      input: [[1, 2], [3]],
      encoding_format: "base64",
    });
    expect(mock.requests.at(-1)?.body).toMatchObject({ input: [[1, 2], [3]] });
    expect(tokens.json["data"]).toEqual([
      { object: "embedding", index: 0, embedding: base64Of(mockVector(0)) },
      { object: "embedding", index: 1, embedding: base64Of(mockVector(1)) },
    ]);
  });

  it("errors in the REST body: 400 Model not supported, 400 naming the field, 401", async () => {
    expect(await post({ model: "claude-sonnet-4-5", input: "a" })).toMatchObject({
      status: 400,
      json: { error: { code: 400, status: "INVALID_ARGUMENT", message: "Model not supported" } },
    });
    expect(await post({ model: "echo-embed", input: "a", dimensions: -1 })).toMatchObject({
      status: 400,
      json: { error: { message: "dimensions must be a positive integer" } },
    });
    expect(await post({ model: "echo-embed", input: "a" }, "Bearer nope")).toMatchObject({
      status: 401,
      json: { error: { message: "Unauthorized" } },
    });
  });
});

describe("server reflection", () => {
  it("lists EmbeddingService and resolves its method", async () => {
    const refl = createClient(reflection.ServerReflection, transportOf("gRPC, HTTP/2", app.url));
    const names: string[] = [];
    let file = false;
    for await (const res of refl.serverReflectionInfo(
      createAsyncIterable([
        create(reflection.ServerReflectionRequestSchema, {
          messageRequest: { case: "listServices", value: "" },
        }),
        create(reflection.ServerReflectionRequestSchema, {
          messageRequest: {
            case: "fileContainingSymbol",
            value: "apikeyserver.v1.EmbeddingService.CreateEmbeddings",
          },
        }),
      ]),
    )) {
      if (res.messageResponse.case === "listServicesResponse") {
        names.push(...res.messageResponse.value.service.map((s) => s.name));
      }
      if (res.messageResponse.case === "fileDescriptorResponse")
        file = res.messageResponse.value.fileDescriptorProto.length > 0;
    }
    expect(names).toContain("apikeyserver.v1.EmbeddingService");
    expect(file).toBe(true);
  });
});

describe("never a provider key", () => {
  it("in any answer or log line", () => {
    const everything = [...seen, app.logs.text()].join("\n");
    for (const piece of canaryPieces) expect(everything).not.toContain(piece);
  });
});
