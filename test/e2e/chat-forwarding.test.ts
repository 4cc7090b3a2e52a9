import { mkdtemp, readFile, rm } from "node:fs/promises";
import * as http2 from "node:http2";
import { create, toBinary } from "@bufbuild/protobuf";
import { ChatCompletionRequestSchema } from "../../gen/apikeyserver/v1/chat_pb.js";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runCli } from "../../src/cli/index.js";
import { startApp, type AppHarness } from "../support/app-harness.js";
import {
  canaryKey,
  canaryPieces,
  createE2eClients,
  e2eProducts,
  protocols,
  type E2eClients,
} from "../support/e2e-clients.js";
import {
  behaviors,
  defaultCompletion,
  startMockProvider,
  type MockProvider,
} from "../support/mock-provider.js";
import { curl } from "../support/server-clients.js";
import { fixture } from "../upstream/helpers.js";

// Issue 5 on the composed server: S7 order up to the provider, the forwarded request and the answer as
// OpenAI sends them, ListModels, and the upstream call's pooling, deadline, cancellation and limits.

function grpcFrame(message: Uint8Array): Buffer {
  const frame = Buffer.alloc(5 + message.length);
  frame.writeUInt32BE(message.length, 1);
  frame.set(message, 5);
  return frame;
}

const hello = { model: "gpt-4o-mini", messages: [{ role: "user", content: "Hello" }] };
const responseFixtures = [
  "chat-completion-plain.json",
  "chat-completion-tool-calls.json",
  "chat-completion-refusal.json",
  "chat-completion-logprobs.json",
  "chat-completion-n2.json",
] as const;

describe("chat forwarding end to end (issue 5)", () => {
  let mock: MockProvider;
  let app: AppHarness;
  let clients: E2eClients;
  let auth: string;

  beforeAll(async () => {
    mock = await startMockProvider();
    app = await startApp({ products: e2eProducts(mock.url), env: { API_KEY_SERVER_MAX_TOKENS: "2048" } });
    clients = createE2eClients(app.url);
    auth = `Bearer ${await app.token({ claims: { products: ["product-dev", "product-capped"] } })}`;
  });
  afterAll(async () => {
    clients.close();
    await app.close();
    await mock.close();
  });

  const fixtureCases = protocols.flatMap((protocol) => responseFixtures.map((name) => ({ protocol, name })));

  it.each(fixtureCases)(
    "$protocol: the provider's $name comes back field for field",
    async ({ protocol, name }) => {
      const answer = fixture(name);
      mock.setBehavior(behaviors.json(200, answer));
      const outcome = await clients.chat(protocol, "product-dev", hello, { authorization: auth });
      expect(outcome.code).toBe("OK");
      // REST: the body as received; Connect/gRPC: the decoded message through the same REST writer.
      expect(outcome.body).toStrictEqual(answer);
      if (protocol === "rest") {
        expect(outcome.status).toBe(200);
        expect(JSON.parse(outcome.raw)).toStrictEqual(answer);
      }
    },
  );

  const capped = (body: Record<string, unknown>, cap: number) => ({ ...body, max_completion_tokens: cap });
  const requestCases = protocols.flatMap((protocol) => [
    // The plain request sets no limit: the cap goes upstream in OpenAI's own field.
    {
      protocol,
      name: "request-plain.json",
      product: "product-dev",
      sent: fixture("request-plain.json"),
      received: capped(fixture("request-plain.json"), 2048),
    },
    {
      protocol,
      name: "request-plain.json (product cap)",
      product: "product-capped",
      sent: fixture("request-plain.json"),
      received: capped(fixture("request-plain.json"), 100),
    },
    // The tools request sets max_tokens within the cap: forwarded unchanged, no cap field added.
    {
      protocol,
      name: "request-tools.json",
      product: "product-dev",
      sent: fixture("request-tools.json"),
      received: fixture("request-tools.json"),
    },
    {
      protocol,
      name: "every scalar knob, nulls and zeros",
      product: "product-dev",
      sent: {
        model: "gpt-4o",
        messages: [
          { role: "user", content: "What is 2+2?", name: "alice" },
          {
            role: "assistant",
            content: null,
            tool_calls: [
              { id: "call_1", type: "function", function: { name: "add", arguments: '{"a":2,"b":2}' } },
            ],
          },
          { role: "tool", tool_call_id: "call_1", content: "4" },
        ],
        max_completion_tokens: 2048,
        temperature: 0,
        presence_penalty: 0,
        frequency_penalty: -0.5,
        top_p: 0.9,
        n: 2,
        stop: "END",
        seed: 0,
        logprobs: true,
        top_logprobs: 3,
        parallel_tool_calls: false,
        store: false,
        metadata: { team: "a" },
        reasoning_effort: "low",
        service_tier: "auto",
        user: "user-1",
        tool_choice: { type: "function", function: { name: "add" } },
        response_format: { type: "json_object" },
        stream: false,
        prompt_cache_key: "",
      },
      received: undefined,
    },
  ]);

  it.each(requestCases)(
    "$protocol: the provider receives $name as sent (cap added only when absent)",
    async (c) => {
      mock.setBehavior(behaviors.json(200, defaultCompletion));
      const before = mock.requests.length;
      const outcome = await clients.chat(c.protocol, c.product, c.sent, { authorization: auth });
      expect(outcome.code).toBe("OK");
      expect(mock.requests.length).toBe(before + 1);
      const got = mock.requests.at(-1);
      expect(got?.method).toBe("POST");
      expect(got?.path).toBe("/v1/chat/completions");
      expect(got?.headers["authorization"]).toBe(`Bearer ${canaryKey}`);
      expect(got?.headers["content-type"]).toMatch(/^application\/json/);
      expect(got?.body).toStrictEqual(c.received ?? c.sent);
    },
  );

  it.each(protocols)("%s: ListModels lists the product's models with their provider", async (protocol) => {
    const outcome = await clients.listModels(protocol, "product-dev", { authorization: auth });
    expect(outcome.code).toBe("OK");
    expect(outcome.body).toStrictEqual({
      object: "list",
      data: [
        { id: "gpt-4o", object: "model", created: 0, owned_by: "openai" },
        { id: "gpt-4o-mini", object: "model", created: 0, owned_by: "openai" },
        { id: "echo-1", object: "model", created: 0, owned_by: "echo" },
      ],
    });
  });

  it.each(
    protocols.flatMap((protocol) => [
      { protocol, product: "product-nope", code: "NOT_FOUND", message: "Product not found", status: 404 },
      { protocol, product: "product-other", code: "PERMISSION_DENIED", message: "Forbidden", status: 403 },
    ]),
  )("$protocol: ListModels of $product is $code", async ({ protocol, product, code, message, status }) => {
    const outcome = await clients.listModels(protocol, product, { authorization: auth });
    expect({ code: outcome.code, message: outcome.message }).toEqual({ code, message });
    if (protocol === "rest") expect(outcome.status).toBe(status);
  });

  it.each(protocols)("%s: ListModels without credentials is 401", async (protocol) => {
    const outcome = await clients.listModels(protocol, "product-dev");
    expect({ code: outcome.code, message: outcome.message }).toEqual({
      code: "UNAUTHENTICATED",
      message: "Unauthorized",
    });
  });

  it("upstream connections are pooled: ten calls over three protocols reuse one keep-alive connection", async () => {
    mock.setBehavior(behaviors.json(200, defaultCompletion));
    await clients.chat("rest", "product-dev", hello, { authorization: auth });
    const connections = mock.connectionsSeen;
    const before = mock.requests.length;
    for (let i = 0; i < 10; i++) {
      const outcome = await clients.chat(protocols[i % 3] ?? "rest", "product-dev", hello, {
        authorization: auth,
      });
      expect(outcome.code).toBe("OK");
    }
    expect(mock.requests.length).toBe(before + 10);
    expect(mock.connectionsSeen).toBe(connections);
  });

  it.each(protocols)(
    "%s: the caller cancelling aborts the upstream request (the provider sees it)",
    async (protocol) => {
      mock.setBehavior(behaviors.delay(60_000, behaviors.json(200, defaultCompletion)));
      const abortedBefore = mock.aborted;
      const requested = mock.requests.length;
      const controller = new AbortController();
      const call = clients
        .chat(protocol, "product-dev", hello, { authorization: auth, signal: controller.signal })
        .catch((err: unknown) => err);
      await mock.whenRequested(requested + 1);
      controller.abort();
      await mock.whenAborted(abortedBefore + 1);
      expect(mock.aborted).toBe(abortedBefore + 1);
      const outcome = await call;
      // fetch rejects with the abort; Connect and grpc-js report CANCELLED locally.
      if (protocol === "rest") expect(outcome).toBeInstanceOf(Error);
      else expect(outcome).toMatchObject({ code: "CANCELLED" });
    },
  );

  // Over HTTP/2 a client cancels with RST_STREAM(CANCEL), which Node's compat layer also reports as a
  // "finished" response: the server must still tell a cancelled call from an answered one.
  it.each([
    { kind: "REST over h2c", path: "/v1/chat/product-dev", contentType: "application/json" },
    {
      kind: "raw gRPC frame",
      path: "/apikeyserver.v1.ChatService/CreateChatCompletion",
      contentType: "application/grpc",
    },
  ])(
    "$kind: RST_STREAM(CANCEL) from the client aborts the upstream request",
    async ({ path, contentType }) => {
      mock.setBehavior(behaviors.delay(60_000, behaviors.json(200, defaultCompletion)));
      const abortedBefore = mock.aborted;
      const requested = mock.requests.length;
      const session = http2.connect(app.url);
      session.on("error", () => {});
      try {
        const body =
          contentType === "application/json"
            ? Buffer.from(JSON.stringify(hello))
            : grpcFrame(
                toBinary(
                  ChatCompletionRequestSchema,
                  create(ChatCompletionRequestSchema, {
                    product: "product-dev",
                    model: hello.model,
                    messages: [{ role: "user", content: { case: "text", value: "Hello" } }],
                  }),
                ),
              );
        const stream = session.request({
          ":method": "POST",
          ":path": path,
          "content-type": contentType,
          authorization: auth,
        });
        stream.on("error", () => {});
        stream.end(body);
        await mock.whenRequested(requested + 1);
        stream.close(http2.constants.NGHTTP2_CANCEL);
        await mock.whenAborted(abortedBefore + 1);
        expect(mock.aborted).toBe(abortedBefore + 1);
      } finally {
        session.destroy();
      }
    },
  );

  it.each(protocols)(
    "%s: the caller's deadline, sooner than the server timeout, ends the upstream call (504 / DEADLINE_EXCEEDED)",
    async (protocol) => {
      mock.setBehavior(behaviors.delay(60_000, behaviors.json(200, defaultCompletion)));
      const abortedBefore = mock.aborted;
      const outcome = await clients.chat(protocol, "product-dev", hello, {
        authorization: auth,
        timeoutMs: 300,
      });
      expect(outcome.code).toBe("DEADLINE_EXCEEDED");
      if (protocol === "rest") {
        expect(outcome.status).toBe(504);
        expect(outcome.message).toBe("Upstream timeout");
      }
      await mock.whenAborted(abortedBefore + 1);
    },
  );

  it("a redirect from the provider is not followed: one request, 502", async () => {
    mock.setBehavior(behaviors.redirect(`${mock.url}/v1/elsewhere`, 307));
    const before = mock.requests.length;
    const outcome = await clients.chat("rest", "product-dev", hello, { authorization: auth });
    expect(outcome.status).toBe(502);
    expect(outcome.message).toBe("Upstream service error");
    expect(mock.requests.length).toBe(before + 1);
    expect(mock.requests.at(-1)?.path).toBe("/v1/chat/completions");
  });

  it.each([
    ["with a Content-Length", true],
    ["chunked, no length", false],
  ])(
    "a provider answer over the size cap (11 MiB, %s) is 502, not buffered whole",
    async (_name, declare) => {
      mock.setBehavior(behaviors.oversized(11 * 1024 * 1024, declare));
      const outcome = await clients.chat("rest", "product-dev", hello, { authorization: auth });
      expect(outcome.status).toBe(502);
      expect(outcome.body).toEqual({
        error: { code: 502, status: "UNAVAILABLE", message: "Upstream service error" },
        detail: "Upstream service error",
      });
    },
  );

  it("the access log line of a proxied call names product, model, caller, status and token usage", async () => {
    mock.setBehavior(behaviors.json(200, defaultCompletion));
    const from = app.logs.lines.length;
    await clients.chat("rest", "product-dev", hello, { authorization: auth });
    const line = app.logs
      .records()
      .slice(from)
      .find((r) => r["message"] === "apikeyserver.v1.ChatService/CreateChatCompletion 200");
    expect(line).toMatchObject({
      severity: "INFO",
      product: "product-dev",
      model: "gpt-4o-mini",
      caller: "jwt:svc-test",
      promptTokens: 9,
      completionTokens: 2,
      totalTokens: 11,
      httpRequest: { requestMethod: "POST", requestUrl: "/v1/chat/product-dev", status: 200 },
    });
    for (const piece of canaryPieces) expect(app.logs.text()).not.toContain(piece);
  });
});

describe("the runbook's example request (seed runbook, チャットエンドポイント)", () => {
  let mock: MockProvider;
  let app: AppHarness;
  let cliDir: string;
  let token: string;
  const io = (out: string[]) => ({ stdout: (l: string) => out.push(l), stderr: () => undefined, env: {} });

  beforeAll(async () => {
    mock = await startMockProvider();
    const example = JSON.parse(await readFile("config/openai_api_keys.example.json", "utf8")) as {
      "product-dev": { providers: { openai: Record<string, unknown> } };
    };
    // The example config as shipped, with only the openai provider's host pointed at the mock.
    example["product-dev"].providers.openai["base_url"] = `${mock.url}/v1`;
    app = await startApp({ products: example });

    // The token comes from the CLI, exactly as the runbook has an operator make one.
    cliDir = await mkdtemp(join(tmpdir(), "aks-cli-"));
    const out: string[] = [];
    expect(await runCli(["keygen", "--config-dir", cliDir], io(out))).toBe(0);
    const minted: string[] = [];
    expect(
      await runCli(
        ["token", "--product", "product-dev", "--sub", "operator", "--config-dir", cliDir],
        io(minted),
      ),
    ).toBe(0);
    token = minted[0] ?? "";
    await app.writeSecret(
      "jwt_public_keys.json",
      JSON.parse(await readFile(join(cliDir, "jwt_public_keys.json"), "utf8")),
    );
  });
  afterAll(async () => {
    await app.close();
    await mock.close();
    await rm(cliDir, { recursive: true, force: true });
  });

  const runbookCurl = (model: string) =>
    curl([
      "-X",
      "POST",
      `${app.url}/v1/chat/product-dev`,
      "-H",
      "Content-Type: application/json",
      "-H",
      `Authorization: Bearer ${token}`,
      "-d",
      `{\n    "model": "${model}",\n    "messages": [{"role": "user", "content": "Hello"}]\n  }`,
    ]);

  it("as written (gpt-4o): forwarded with the product's key and its max_tokens cap; the answer is OpenAI's", async () => {
    mock.setBehavior(behaviors.json(200, fixture("chat-completion-plain.json")));
    const res = await runbookCurl("gpt-4o");
    expect(res.status).toBe(200);
    expect(JSON.parse(res.body)).toStrictEqual(fixture("chat-completion-plain.json"));
    expect(mock.requests.at(-1)?.headers["authorization"]).toBe("Bearer sk-your-api-key");
    expect(mock.requests.at(-1)?.body).toStrictEqual({
      model: "gpt-4o",
      messages: [{ role: "user", content: "Hello" }],
      max_completion_tokens: 4096,
    });
  });

  it("with the echo provider's model: an OpenAI-shaped chat completion without any network", async () => {
    const before = mock.requests.length;
    const res = await runbookCurl("echo-1");
    expect(res.status).toBe(200);
    const body = JSON.parse(res.body) as Record<string, unknown>;
    expect(body).toMatchObject({
      object: "chat.completion",
      model: "echo-1",
      choices: [
        {
          index: 0,
          message: { role: "assistant", content: "Hello", refusal: null, annotations: [] },
          logprobs: null,
          finish_reason: "stop",
        },
      ],
      system_fingerprint: null,
    });
    expect(body["id"]).toMatch(/^chatcmpl-/);
    expect(mock.requests.length).toBe(before);
  });

  it("without the token: 401 in the S7 body", async () => {
    const res = await curl([
      "-X",
      "POST",
      `${app.url}/v1/chat/product-dev`,
      "-H",
      "Content-Type: application/json",
      "-d",
      JSON.stringify(hello),
    ]);
    expect(res.status).toBe(401);
    expect(JSON.parse(res.body)).toStrictEqual({
      error: { code: 401, status: "UNAUTHENTICATED", message: "Unauthorized" },
      detail: "Unauthorized",
    });
  });
});
