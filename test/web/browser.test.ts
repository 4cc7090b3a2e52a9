/**
 * Web clients in a real browser (README, "Web clients"): headless Chromium loads a page from one local
 * origin and calls the server on another port with a JWT, over every surface a page uses. CORS is what
 * makes or breaks each call, so nothing here can pass on a server that answers curl but not a browser.
 */
import { mkdir } from "node:fs/promises";
import { resolve } from "node:path";
import type { ServerResponse } from "node:http";
import type { Browser, Page } from "playwright-core";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { startApp, type AppHarness } from "../support/app-harness.js";
import { bundleForBrowser, launchChromium, startPageServer, type PageServer } from "../support/browser.js";
import { webProducts } from "../support/web-products.js";
import { behaviors, startMockProvider, type MockProvider } from "../support/mock-provider.js";
import type { Clients, Target } from "./page/clients.js";

const root = resolve(import.meta.dirname, "../..");
/** Where the screenshot of the example page goes; CI prints the path (README, "Web clients"). */
const screenshotPath = resolve(root, "artifacts/web/example-page-streaming.png");
const canaryKey = "sk-web-canary-0123456789abcdefghij";

/** The words the slow provider streams; it holds the stream open after `heldAfter` of them. */
const slowWords = ["Streaming ", "token ", "by ", "token ", "from ", "the ", "provider."];
const heldAfter = 4;

let app: AppHarness;
let mock: MockProvider;
let allowedPage: PageServer;
let otherPage: PageServer;
let browser: Browser;
let token: string;
/** Lets the held slow stream finish. */
let releaseSlowStream: () => void = () => undefined;
/** Why Chromium could not start, if it could not. */
let launchFailure: Error | undefined;

beforeAll(async () => {
  try {
    browser = await launchChromium();
  } catch (err) {
    launchFailure = err instanceof Error ? err : new Error(String(err));
    return;
  }
  const bundle = await bundleForBrowser("test/web/page/clients.ts");
  const files = {
    "/": {
      contentType: "text/html; charset=utf-8",
      body: '<!doctype html><title>clients</title><script type="module" src="/clients.js"></script>',
    },
    "/clients.js": { contentType: "text/javascript; charset=utf-8", body: bundle },
  };
  const dirs = { "/example/": resolve(root, "examples/web") };
  allowedPage = await startPageServer(files, dirs);
  otherPage = await startPageServer(files, dirs);

  mock = await startMockProvider(behaviors.handler((_req, res) => streamSlowly(res)));
  app = await startApp({
    products: {
      ...webProducts,
      "product-slow": {
        providers: { openai: { api_key: canaryKey, base_url: `${mock.url}/v1`, models: ["slow-1"] } },
      },
    },
    env: { API_KEY_SERVER_CORS_ORIGINS: allowedPage.origin },
  });
  token = await app.token({ claims: { products: ["product-dev", "product-limited", "product-slow"] } });
}, 120_000);

// Without a browser every test fails with the reason (a failing hook in beforeAll would only mark them
// skipped): the browser tests never pass by not running.
beforeEach(() => {
  if (launchFailure !== undefined) throw launchFailure;
});

afterAll(async () => {
  releaseSlowStream();
  await browser?.close();
  await app?.close();
  await mock?.close();
  await allowedPage?.close();
  await otherPage?.close();
});

/** An OpenAI stream that sends `heldAfter` words, then waits for releaseSlowStream. */
function streamSlowly(res: ServerResponse): void {
  const released = new Promise<void>((done) => (releaseSlowStream = done));
  res.writeHead(200, { "content-type": "text/event-stream" });
  const chunk = (delta: object, finish: string | null = null) =>
    `data: ${JSON.stringify({
      id: "chatcmpl-slow",
      object: "chat.completion.chunk",
      created: 1_700_000_000,
      model: "slow-1",
      choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }],
    })}\n\n`;
  res.write(chunk({ role: "assistant", content: "" }));
  for (const word of slowWords.slice(0, heldAfter)) res.write(chunk({ content: word }));
  void released.then(() => {
    for (const word of slowWords.slice(heldAfter)) res.write(chunk({ content: word }));
    res.end(`${chunk({}, "stop")}data: [DONE]\n\n`);
  });
}

async function openPage(server: PageServer): Promise<Page> {
  const page = await browser.newPage();
  await page.goto(`${server.origin}/`);
  await page.waitForFunction(() => (globalThis as { clients?: unknown }).clients !== undefined);
  return page;
}

/** Runs one of the page's clients in the browser and returns what the page got. */
function run<K extends keyof Clients>(
  page: Page,
  name: K,
  target: Partial<Target>,
  text: string,
): Promise<Awaited<ReturnType<Clients[K]>>> {
  const full: Target = { server: app.url, token, product: "product-dev", model: "echo-1", ...target };
  return page.evaluate(
    async ([name, target, text]) => {
      const clients = (globalThis as unknown as { clients: Clients }).clients;
      return await clients[name](target, text);
    },
    [name, full, text] as const,
  ) as Promise<Awaited<ReturnType<Clients[K]>>>;
}

describe("a page on an allowed origin", () => {
  let page: Page;
  beforeAll(async () => {
    if (launchFailure === undefined) page = await openPage(allowedPage);
  });

  it("(a) fetches POST /v1/chat/{product} with a JWT and reads the answer and the exposed headers", async () => {
    const answer = await run(page, "restUnary", {}, "Hello from the browser");
    expect(answer.status).toBe(200);
    const body = JSON.parse(answer.body) as { choices: { message: { content: string } }[] };
    expect(body.choices[0]?.message.content).toBe("Hello from the browser");
    expect(answer.headers["content-type"]).toBe("application/json");
  });

  it("(e) reads the SSE route with fetch streaming", async () => {
    const answer = await run(page, "restStream", {}, "one two three");
    expect(answer.status).toBe(200);
    const deltas = answer.events
      .filter((e) => e !== "[DONE]")
      .map(
        (e) =>
          (JSON.parse(e) as { choices: { delta: { content?: string } }[] }).choices[0]?.delta.content ?? "",
      );
    expect(deltas.join("")).toBe("one two three");
  });

  it("(b) calls the OpenAI-compatible base URL with the official openai package, unary and streaming", async () => {
    expect(await run(page, "openaiUnary", {}, "hello openai")).toBe("hello openai");
    const deltas = await run(page, "openaiStream", {}, "streamed through the sdk");
    expect(deltas.join("")).toBe("streamed through the sdk");
    expect(deltas.length).toBeGreaterThan(1);
  });

  it("(f) calls the Anthropic base URL with the official @anthropic-ai/sdk, unary, streaming and an error", async () => {
    expect(await run(page, "anthropicUnary", {}, "hello anthropic")).toEqual(["hello anthropic"]);
    const streamed = await run(page, "anthropicStream", {}, "streamed through the anthropic sdk");
    expect(streamed.deltas.join("")).toBe("streamed through the anthropic sdk");
    expect(streamed.deltas.length).toBeGreaterThan(1);
    expect(streamed.stop).toBe("end_turn");
    // The runbook's message in Anthropic's error shape reaches the page (the answer is readable cross-origin).
    expect(await run(page, "anthropicError", { model: "no-such-model" }, "hi")).toEqual({
      ok: false,
      status: 400,
      type: "invalid_request_error",
      message: "Model not supported",
    });
  });

  it("(c) calls with @connectrpc/connect-web's Connect transport, unary and server streaming", async () => {
    expect(await run(page, "connectUnary", {}, "connect unary")).toEqual({
      ok: true,
      texts: ["connect unary"],
    });
    const streamed = await run(page, "connectStream", {}, "connect streaming works");
    expect(streamed).toMatchObject({ ok: true });
    if (!streamed.ok) throw new Error("unreachable");
    expect(streamed.texts.join("")).toBe("connect streaming works");
    expect(streamed.texts.length).toBeGreaterThan(1);
  });

  it("(d) calls with the gRPC-Web transport, unary and server streaming", async () => {
    expect(await run(page, "grpcWebUnary", {}, "grpc-web unary")).toEqual({
      ok: true,
      texts: ["grpc-web unary"],
    });
    const streamed = await run(page, "grpcWebStream", {}, "grpc-web streaming works");
    expect(streamed).toMatchObject({ ok: true });
    if (!streamed.ok) throw new Error("unreachable");
    expect(streamed.texts.join("")).toBe("grpc-web streaming works");
  });

  it("reads gRPC errors through the exposed grpc-status and grpc-message headers", async () => {
    // Unary gRPC-Web errors arrive as headers only (a trailers-only answer): unreadable unless exposed.
    expect(await run(page, "grpcWebUnary", { token: "not-a-jwt" }, "x")).toEqual({
      ok: false,
      code: "16",
      message: "[unauthenticated] Unauthorized",
      rawMessage: "Unauthorized",
    });
    expect(await run(page, "connectUnary", { product: "product-nope" }, "x")).toMatchObject({
      ok: false,
      code: "5",
      rawMessage: "Product not found",
    });
  });

  it("reads Retry-After from JavaScript on a 429", async () => {
    const first = await run(page, "restUnary", { product: "product-limited" }, "first");
    expect(first.status).toBe(200);
    const refused = await run(page, "restUnary", { product: "product-limited" }, "second");
    expect(refused.status).toBe(429);
    expect(JSON.parse(refused.body)).toMatchObject({ error: { message: "Rate limit exceeded" } });
    expect(Number(refused.headers["retry-after"])).toBeGreaterThanOrEqual(1);
    // Readable only because they are exposed: a page can pace itself on them.
    expect(refused.headers["ratelimit-limit"]).toBe("1");
    expect(refused.headers["ratelimit-remaining"]).toBe("0");
  });

  it("never sees a provider key in what it can read", async () => {
    const answer = await run(page, "restUnary", { product: "product-slow", model: "nope" }, "x");
    expect(answer.status).toBe(400);
    expect(JSON.stringify(answer)).not.toContain(canaryKey);
  });
});

describe("a page on an origin that is not allowed", () => {
  it("is blocked by the browser, and the server runs no handler for it", async () => {
    const page = await openPage(otherPage);
    const before = app.logs.records().length;
    const blocked = await page.evaluate(
      async (target) => {
        const clients = (globalThis as unknown as { clients: Clients }).clients;
        try {
          await clients.restUnary(target, "let me in");
          return "not blocked";
        } catch (err) {
          return String(err);
        }
      },
      { server: app.url, token, product: "product-dev", model: "echo-1" } satisfies Target,
    );
    expect(blocked).toBe("TypeError: Failed to fetch");
    // Only the refused preflight reached the server: one access line, and no chat call.
    const after = app.logs.records().slice(before);
    expect(after.map((r) => r["message"])).toEqual(["OPTIONS /v1/chat/product-dev 403"]);
    await page.close();
  });
});

describe("the example page (examples/web/)", () => {
  it("streams a reply token by token, and is photographed mid-stream", async () => {
    const page = await browser.newPage({ viewport: { width: 900, height: 640 } });
    await page.goto(`${allowedPage.origin}/example/`);
    await page.fill("#server", app.url);
    await page.fill("#token", token);
    await page.fill("#product", "product-slow");
    await page.click("#load-models");
    await page.waitForSelector('#model option[value="slow-1"]', { state: "attached" });
    await page.fill("#prompt", "Say something, slowly.");
    await page.click("#send");
    // Mid-stream: the held words are on screen, the rest not yet.
    const shown = slowWords.slice(0, heldAfter).join("");
    await page.locator(`#reply:text-is(${JSON.stringify(shown.trim())})`).waitFor();
    expect(await page.textContent("#status")).toBe("Streaming…");
    await mkdir(resolve(screenshotPath, ".."), { recursive: true });
    await page.screenshot({ path: screenshotPath });
    console.log(`screenshot of the example page mid-stream: ${screenshotPath}`);

    releaseSlowStream();
    await page.locator('#status:text-is("Done")').waitFor();
    expect(await page.textContent("#reply")).toBe(slowWords.join(""));
    await page.close();
  });

  it.each<[string, Partial<Target>, string]>([
    ["a bad token", { token: "not-a-jwt" }, "401 Unauthorized"],
    ["an unknown product", { product: "product-nope" }, "404 Product not found"],
  ])("shows %s as the runbook names it", async (_, override, message) => {
    const page = await browser.newPage();
    await page.goto(`${allowedPage.origin}/example/`);
    await page.fill("#server", app.url);
    await page.fill("#token", override.token ?? token);
    await page.fill("#product", override.product ?? "product-dev");
    await page.click("#load-models");
    await page.locator(`#status:has-text(${JSON.stringify(message)})`).waitFor();
    await page.close();
  });
});
