import { createOpenAI } from "@ai-sdk/openai";
import { OpenAIEmbeddings } from "@langchain/openai";
import { embed, embedMany } from "ai";
import OpenAI, { APIError, AuthenticationError, BadRequestError, InternalServerError } from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { hmacSigningFetch } from "../support/hmac-fetch.js";
import { startApp, type AppHarness } from "../support/app-harness.js";
import { canaryKey, canaryPieces } from "../support/e2e-clients.js";
import { behaviors, startMockProvider, type MockProvider } from "../support/mock-provider.js";
import { embeddingsBehavior, mockVector } from "../support/mock-embeddings.js";
import { readmeSnippet, runSnippet } from "../support/readme-snippet.js";

// Embeddings on the OpenAI surface (`POST /openai/<product>/v1/embeddings`) with the official `openai` SDK,
// unchanged: every provider kind against the mock provider's embeddings wire formats (OpenAI, Azure
// OpenAI, OpenAI-compatible, Gemini), the built-in echo provider, and the error paths.

let mock: MockProvider;
let app: AppHarness;
let token: string;
/** Every body and header a caller saw, for the leak check at the end. */
const seen: string[] = [];

const products = (url: string) => ({
  "product-dev": {
    providers: {
      openai: { api_key: canaryKey, base_url: `${url}/v1`, models: ["text-embedding-3-small", "gpt-4o"] },
      azure: {
        kind: "azure-openai",
        api_key: canaryKey,
        base_url: `${url}/azure`,
        api_version: "2024-10-21",
        deployments: { "text-embedding-3-large": "embed-large" },
        models: ["text-embedding-3-large"],
      },
      compat: {
        kind: "openai-compatible",
        api_key: "compat-key",
        base_url: `${url}/compat/v1`,
        models: ["nomic-embed-text"],
      },
      gemini: { api_key: canaryKey, base_url: `${url}/v1beta`, models: ["gemini-embedding-001"] },
      anthropic: { api_key: canaryKey, base_url: url, models: ["claude-sonnet-4-5"] },
      echo: { models: ["echo-1", "echo-embed"] },
    },
  },
  "product-limited": {
    providers: { echo: { models: ["echo-embed"] } },
    rate_limit: { requests_per_minute: 1 },
  },
  "product-tokens": {
    providers: { echo: { models: ["echo-embed"] } },
    rate_limit: { requests_per_minute: 100, tokens_per_minute: 10 },
  },
});
const hmacKey = { keyId: "svc-hmac", secret: "secret-hmac-0123456789abcdef0123456789" };

beforeAll(async () => {
  mock = await startMockProvider(embeddingsBehavior());
  app = await startApp({
    products: products(mock.url),
    hmac: { [hmacKey.keyId]: { secret: hmacKey.secret, products: ["product-dev"] } },
    env: { API_KEY_SERVER_REQUEST_TIMEOUT_SECONDS: "30" },
  });
  token = await app.token({ claims: { products: ["product-dev", "product-limited", "product-tokens"] } });
});
afterAll(async () => {
  await app.close();
  await mock.close();
});

function sdk(product = "product-dev", apiKey = token) {
  return new OpenAI({ baseURL: `${app.url}/openai/${product}/v1`, apiKey, maxRetries: 0 });
}

async function failure(call: Promise<unknown>): Promise<APIError> {
  const err = await call.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(APIError);
  const api = err as APIError;
  seen.push(JSON.stringify(api.error), JSON.stringify(Object.fromEntries(api.headers ?? new Headers())));
  return api;
}

const lastRequest = () => {
  const req = mock.requests.at(-1);
  if (req === undefined) throw new Error("the mock got no request");
  return req;
};

describe("openai SDK embeddings.create against the mock provider", () => {
  it("asks base64 by default and gets the vector decoded; the product's key goes upstream", async () => {
    const before = mock.requests.length;
    const result = await sdk().embeddings.create({ model: "text-embedding-3-small", input: "Hello" });
    seen.push(JSON.stringify(result));
    expect(mock.requests.length).toBe(before + 1);
    const req = lastRequest();
    expect(req.path).toBe("/v1/embeddings");
    expect(req.headers.authorization).toBe(`Bearer ${canaryKey}`);
    expect(req.body).toEqual({ model: "text-embedding-3-small", input: "Hello", encoding_format: "base64" });
    expect(result.object).toBe("list");
    expect(result.model).toBe("text-embedding-3-small");
    expect(result.data).toEqual([{ object: "embedding", index: 0, embedding: mockVector(0) }]);
    expect(result.usage).toEqual({ prompt_tokens: 5, total_tokens: 5 });
  });

  it("float with dimensions, a batch in order, and user (the provider is asked for base64)", async () => {
    const result = await sdk().embeddings.create({
      model: "text-embedding-3-small",
      input: ["a", "b", "c"],
      encoding_format: "float",
      dimensions: 6,
      user: "user-1",
    });
    expect(lastRequest().body).toEqual({
      model: "text-embedding-3-small",
      input: ["a", "b", "c"],
      // OpenAI is always asked for base64, a quarter of the bytes; the caller gets the numbers it asked.
      encoding_format: "base64",
      dimensions: 6,
      user: "user-1",
    });
    expect(result.data.map((d) => d.index)).toEqual([0, 1, 2]);
    expect(result.data.map((d) => d.embedding)).toEqual([0, 1, 2].map((i) => mockVector(i, 6)));
    expect(result.usage).toEqual({ prompt_tokens: 15, total_tokens: 15 });
  });

  it("a full batch (2048 inputs of 1536 dimensions, over the 10 MiB chat answer cap) is served", async () => {
    const input = Array.from({ length: 2048 }, (_, i) => `text ${i}`);
    mock.setBehavior(embeddingsBehavior(1536));
    try {
      const result = await sdk().embeddings.create({ model: "text-embedding-3-small", input });
      expect(result.data).toHaveLength(2048);
      expect(result.data[2047]?.embedding).toEqual(mockVector(2047, 1536));
    } finally {
      mock.setBehavior(embeddingsBehavior());
    }
  }, 60_000);

  it("token ids, one array and a batch of arrays, go to an OpenAI provider as sent", async () => {
    await sdk().embeddings.create({ model: "text-embedding-3-small", input: [1, 2, 3] });
    expect((lastRequest().body as { input: unknown }).input).toEqual([1, 2, 3]);
    const batch = await sdk().embeddings.create({ model: "text-embedding-3-small", input: [[1, 2], [3]] });
    expect((lastRequest().body as { input: unknown }).input).toEqual([[1, 2], [3]]);
    expect(batch.data).toHaveLength(2);
  });

  it("Azure OpenAI: the deployment's embeddings path, api-version and the api-key header", async () => {
    const result = await sdk().embeddings.create({ model: "text-embedding-3-large", input: ["x", "y"] });
    const req = lastRequest();
    expect(req.path).toBe("/azure/openai/deployments/embed-large/embeddings?api-version=2024-10-21");
    expect(req.headers["api-key"]).toBe(canaryKey);
    expect(req.headers.authorization).toBeUndefined();
    expect(result.data.map((d) => d.embedding)).toEqual([mockVector(0), mockVector(1)]);
  });

  it("an OpenAI-compatible host: {base_url}/embeddings with its bearer key", async () => {
    const result = await sdk().embeddings.create({
      model: "nomic-embed-text",
      input: "q",
      encoding_format: "float",
    });
    const req = lastRequest();
    expect(req.path).toBe("/compat/v1/embeddings");
    expect(req.headers.authorization).toBe("Bearer compat-key");
    expect(result.data[0]?.embedding).toEqual(mockVector(0));
  });

  it("Gemini: batchEmbedContents, dimensions as outputDimensionality, usage estimated", async () => {
    const result = await sdk().embeddings.create({
      model: "gemini-embedding-001",
      input: ["first text", "second"],
      dimensions: 3,
    });
    const req = lastRequest();
    expect(req.path).toBe("/v1beta/models/gemini-embedding-001:batchEmbedContents");
    expect(req.headers["x-goog-api-key"]).toBe(canaryKey);
    expect(req.body).toEqual({
      requests: [
        {
          model: "models/gemini-embedding-001",
          content: { parts: [{ text: "first text" }] },
          outputDimensionality: 3,
        },
        {
          model: "models/gemini-embedding-001",
          content: { parts: [{ text: "second" }] },
          outputDimensionality: 3,
        },
      ],
    });
    expect(result.data.map((d) => d.embedding)).toEqual([mockVector(0, 3), mockVector(1, 3)]);
    expect(result.usage.prompt_tokens).toBeGreaterThan(0);
    expect(result.usage.total_tokens).toBe(result.usage.prompt_tokens);
    const line = app.logs
      .records()
      .findLast((r) => r["rpc"] === "apikeyserver.v1.EmbeddingService/CreateEmbeddings");
    expect(line).toMatchObject({
      surface: "embeddings",
      model: "gemini-embedding-001",
      promptTokens: result.usage.prompt_tokens,
    });
  });

  it("Gemini refuses token ids and user with 400 naming the field, nothing sent", async () => {
    const before = mock.requests.length;
    const tokens = await failure(sdk().embeddings.create({ model: "gemini-embedding-001", input: [1, 2] }));
    expect(tokens).toBeInstanceOf(BadRequestError);
    expect(tokens.message).toContain('input: token ids are not supported by provider kind "gemini"');
    const user = await failure(
      sdk().embeddings.create({ model: "gemini-embedding-001", input: "a", user: "u" }),
    );
    expect(user.status).toBe(400);
    expect(user.message).toContain('user: not supported by provider kind "gemini"');
    expect(mock.requests.length).toBe(before);
  });
});

describe("echo embeddings (no network)", () => {
  it("deterministic unit vectors: the same input the same vector, another input another", async () => {
    const a = await sdk().embeddings.create({ model: "echo-embed", input: ["alpha", "beta", "alpha"] });
    const [x, y, z] = a.data.map((d) => d.embedding);
    expect(x).toHaveLength(256);
    expect(x).toEqual(z);
    expect(x).not.toEqual(y);
    const norm = Math.sqrt((x ?? []).reduce((s, v) => s + v * v, 0));
    expect(norm).toBeCloseTo(1, 5);
    const again = await sdk().embeddings.create({
      model: "echo-embed",
      input: "alpha",
      encoding_format: "float",
    });
    expect(again.data[0]?.embedding).toEqual(x);
    const short = await sdk().embeddings.create({ model: "echo-embed", input: "alpha", dimensions: 8 });
    expect(short.data[0]?.embedding).toHaveLength(8);
    expect(a.usage.prompt_tokens).toBeGreaterThan(0);
  });

  it("token ids too", async () => {
    const result = await sdk().embeddings.create({ model: "echo-embed", input: [[5, 6], [7]] });
    expect(result.data).toHaveLength(2);
    expect(result.usage.prompt_tokens).toBe(3);
  });
});

describe("errors", () => {
  it("a provider without embeddings (anthropic): 400 Model not supported, nothing sent", async () => {
    const before = mock.requests.length;
    const err = await failure(sdk().embeddings.create({ model: "claude-sonnet-4-5", input: "a" }));
    expect(err).toBeInstanceOf(BadRequestError);
    expect(err.error).toMatchObject({ message: "Model not supported", param: "model" });
    expect(mock.requests.length).toBe(before);
  });

  it("a model the product does not list: 400 Model not supported", async () => {
    const err = await failure(sdk().embeddings.create({ model: "text-embedding-9", input: "a" }));
    expect(err.status).toBe(400);
    expect(err.error).toMatchObject({ message: "Model not supported" });
  });

  it.each([
    ["no input", { model: "echo-embed" }, 'Missing required field "input"'],
    ["an empty list", { model: "echo-embed", input: [] }, "input: must be a string or a non-empty array"],
    ["mixed items", { model: "echo-embed", input: ["a", 1] }, "input: must be a string, an array of strings"],
    ["an empty string", { model: "echo-embed", input: [""] }, "input: must not contain empty strings"],
    [
      "dimensions 0",
      { model: "echo-embed", input: "a", dimensions: 0 },
      "dimensions must be a positive integer",
    ],
    [
      "a format",
      { model: "echo-embed", input: "a", encoding_format: "hex" },
      'encoding_format must be "float" or "base64"',
    ],
    ["an unknown field", { model: "echo-embed", input: "a", nope: 1 }, 'Unknown field "nope"'],
    ["a number input", { model: "echo-embed", input: 5 }, 'Invalid value for field "input"'],
    [
      "fractional dimensions",
      { model: "echo-embed", input: "a", dimensions: 1.5 },
      'Invalid value for field "dimensions"',
    ],
    [
      "echo dimensions over 4096",
      { model: "echo-embed", input: "a", dimensions: 5000 },
      'dimensions: at most 4096 for provider kind "echo"',
    ],
    [
      "too many inputs",
      { model: "echo-embed", input: Array.from({ length: 2049 }, () => "a") },
      "input: at most 2048 inputs per request",
    ],
  ])("bad input (%s): 400 naming it", async (_name, body, message) => {
    const res = await fetch(`${app.url}/openai/product-dev/v1/embeddings`, {
      method: "POST",
      headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
      body: JSON.stringify(body),
    });
    const text = await res.text();
    seen.push(text);
    expect(res.status).toBe(400);
    const json = JSON.parse(text) as { error: { message: string; type: string } };
    expect(json.error.message).toContain(message);
    expect(json.error.type).toBe("invalid_request_error");
  });

  it("no or a bad token: 401 Unauthorized", async () => {
    const err = await failure(
      sdk("product-dev", "not-a-jwt").embeddings.create({ model: "echo-embed", input: "a" }),
    );
    expect(err).toBeInstanceOf(AuthenticationError);
    expect(err.error).toMatchObject({ message: "Unauthorized" });
  });

  it("a product the caller may not use: 403; an unknown one: 404", async () => {
    const other = await app.token({ claims: { products: ["product-limited"] } });
    const forbidden = await failure(
      sdk("product-dev", other).embeddings.create({ model: "echo-embed", input: "a" }),
    );
    expect(forbidden.status).toBe(403);
    const unknown = await failure(sdk("product-none").embeddings.create({ model: "echo-embed", input: "a" }));
    expect(unknown.status).toBe(404);
    expect(unknown.error).toMatchObject({ message: "Product not found" });
  });

  it("the product's rate limit applies: 429 Rate limit exceeded with Retry-After", async () => {
    await sdk("product-limited").embeddings.create({ model: "echo-embed", input: "a" });
    const err = await failure(sdk("product-limited").embeddings.create({ model: "echo-embed", input: "a" }));
    expect(err.status).toBe(429);
    expect(err.error).toMatchObject({ message: "Rate limit exceeded" });
    expect(err.headers?.get("retry-after")).toMatch(/^\d+$/);
  });

  it("the usage is charged to the tokens-per-minute limit: a call over it, then 429", async () => {
    const first = await sdk("product-tokens").embeddings.create({
      model: "echo-embed",
      input: "x".repeat(200),
    });
    expect(first.usage.total_tokens).toBeGreaterThan(10);
    const err = await failure(sdk("product-tokens").embeddings.create({ model: "echo-embed", input: "a" }));
    expect(err.status).toBe(429);
    expect(err.error).toMatchObject({ message: "Rate limit exceeded" });
  });

  it("an HMAC-signed caller (signature over the /openai/... path and body) is served", async () => {
    const signingFetch = hmacSigningFetch(hmacKey);
    const client = new OpenAI({
      baseURL: `${app.url}/openai/product-dev/v1`,
      apiKey: "unused",
      maxRetries: 0,
      fetch: signingFetch,
    });
    const result = await client.embeddings.create({ model: "echo-embed", input: "signed" });
    expect(result.data[0]?.embedding).toHaveLength(256);
    const line = app.logs.records().findLast((r) => r["surface"] === "embeddings");
    expect(line).toMatchObject({ caller: "hmac:svc-hmac", protocol: "openai" });
  });

  it("a provider 5xx quoting the key: 502 Upstream service error, the key nowhere", async () => {
    mock.setBehavior(
      behaviors.json(500, {
        error: { message: `internal failure for key ${canaryKey}`, type: "server_error" },
      }),
    );
    try {
      const err = await failure(sdk().embeddings.create({ model: "text-embedding-3-small", input: "a" }));
      expect(err).toBeInstanceOf(InternalServerError);
      expect(err.status).toBe(502);
      expect(err.error).toMatchObject({ message: "Upstream service error" });
    } finally {
      mock.setBehavior(embeddingsBehavior());
    }
  });

  it("a provider 400 quoting the key: 400 with the provider's message scrubbed", async () => {
    mock.setBehavior(
      behaviors.json(400, {
        error: { message: `Invalid input for key ${canaryKey}`, type: "invalid_request_error" },
      }),
    );
    try {
      const err = await failure(sdk().embeddings.create({ model: "text-embedding-3-small", input: "a" }));
      expect(err.status).toBe(400);
      expect(err.message).toContain("Invalid input");
    } finally {
      mock.setBehavior(embeddingsBehavior());
    }
  });

  it("a provider answer that is no embedding list: 502", async () => {
    mock.setBehavior(behaviors.json(200, { object: "list", data: [{ index: 0, embedding: { x: 1 } }] }));
    try {
      const err = await failure(sdk().embeddings.create({ model: "text-embedding-3-small", input: "a" }));
      expect(err.status).toBe(502);
      expect(err.error).toMatchObject({ message: "Upstream service error" });
    } finally {
      mock.setBehavior(embeddingsBehavior());
    }
  });

  it("GET on the embeddings path: 405 with Allow: POST", async () => {
    const res = await fetch(`${app.url}/openai/product-dev/v1/embeddings`, {
      headers: { authorization: `Bearer ${token}` },
    });
    expect(res.status).toBe(405);
    expect(res.headers.get("allow")).toBe("POST");
  });
});

describe("Vercel AI SDK: createOpenAI({ baseURL }).embedding(model)", () => {
  const provider = () =>
    createOpenAI({ baseURL: `${app.url}/openai/product-dev/v1`, apiKey: token }).embedding(
      "text-embedding-3-small",
    );

  it("embed: one value, its vector and usage", async () => {
    const result = await embed({ model: provider(), value: "sunny day", maxRetries: 0 });
    expect(lastRequest().path).toBe("/v1/embeddings");
    expect(lastRequest().body).toMatchObject({ model: "text-embedding-3-small", input: ["sunny day"] });
    expect(result.embedding).toEqual(mockVector(0));
    expect(result.usage.tokens).toBe(5);
  });

  it("embedMany: the vectors in order, dimensions passed", async () => {
    const result = await embedMany({
      model: provider(),
      values: ["a", "b", "c"],
      maxRetries: 0,
      providerOptions: { openai: { dimensions: 5 } },
    });
    expect(lastRequest().body).toMatchObject({ input: ["a", "b", "c"], dimensions: 5 });
    expect(result.embeddings).toEqual([0, 1, 2].map((i) => mockVector(i, 5)));
  });

  it("embedMany against echo: deterministic vectors", async () => {
    const echo = createOpenAI({ baseURL: `${app.url}/openai/product-dev/v1`, apiKey: token }).embedding(
      "echo-embed",
    );
    const result = await embedMany({ model: echo, values: ["x", "y", "x"], maxRetries: 0 });
    expect(result.embeddings[0]).toEqual(result.embeddings[2]);
    expect(result.embeddings[0]).toHaveLength(256);
  });
});

describe("LangChain: OpenAIEmbeddings with configuration.baseURL", () => {
  it("embedQuery and embedDocuments", async () => {
    const embeddings = new OpenAIEmbeddings({
      model: "text-embedding-3-small",
      apiKey: token,
      maxRetries: 0,
      configuration: { baseURL: `${app.url}/openai/product-dev/v1` },
    });
    expect(await embeddings.embedQuery("what is up")).toEqual(mockVector(0));
    expect(lastRequest().body).toMatchObject({ model: "text-embedding-3-small", input: "what is up" });
    expect(await embeddings.embedDocuments(["one", "two"])).toEqual([mockVector(0), mockVector(1)]);
    expect(lastRequest().body).toMatchObject({ input: ["one", "two"] });
  });
});

describe("the OpenAI endpoints not served", () => {
  it.each([
    ["POST", "/v1/completions"],
    ["POST", "/v1/images/generations"],
    ["GET", "/v1/files"],
    ["POST", "/v1/embeddings/extra"],
  ])("%s %s: 404 Not found (route_not_found) in OpenAI's shape", async (method, path) => {
    const res = await fetch(`${app.url}/openai/product-dev${path}`, {
      method,
      headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
      ...(method === "POST" ? { body: "{}" } : {}),
    });
    expect(res.status).toBe(404);
    expect(await res.json()).toEqual({
      error: { message: "Not found", type: "invalid_request_error", param: null, code: "route_not_found" },
    });
  });

  it("a served path with another method: 405 with Allow", async () => {
    const res = await fetch(`${app.url}/openai/product-dev/v1/models`, {
      method: "POST",
      headers: { authorization: `Bearer ${token}` },
    });
    expect(res.status).toBe(405);
    expect(res.headers.get("allow")).toBe("GET");
  });
});

describe("README", () => {
  it("the Embeddings section's Node snippet works verbatim (only the port differs) against echo", async () => {
    const snippet = await readmeSnippet("## Embeddings");
    expect(snippet).toContain("client.embeddings.create");
    expect(await runSnippet(snippet, app.url, { TOKEN: token })).toBe("2 256\n");
  });
});

describe("models list", () => {
  it("lists the product's embedding models like its chat models", async () => {
    const ids: string[] = [];
    for await (const model of sdk().models.list()) ids.push(model.id);
    expect(ids).toEqual(
      expect.arrayContaining([
        "text-embedding-3-small",
        "text-embedding-3-large",
        "nomic-embed-text",
        "gemini-embedding-001",
        "echo-embed",
        "gpt-4o",
      ]),
    );
    const one = await sdk().models.retrieve("text-embedding-3-large");
    expect(one).toMatchObject({ id: "text-embedding-3-large", object: "model", owned_by: "azure-openai" });
  });
});

describe("never a provider key", () => {
  it("in any answer the callers saw or any log line", () => {
    const everything = [...seen, app.logs.text()].join("\n");
    for (const piece of canaryPieces) expect(everything).not.toContain(piece);
  });
});
