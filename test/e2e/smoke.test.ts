import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startApp, type AppHarness } from "../support/app-harness.js";

describe("the composed app (src/app.ts) answers on every surface", () => {
  let app: AppHarness;
  beforeAll(async () => {
    app = await startApp();
  });
  afterAll(() => app.close());

  it("GET /health is 200 with the product count", async () => {
    const res = await fetch(`${app.url}/health`);
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ status: "ok", products: 1, auth_methods: ["jwt"] });
  });

  it("the runbook's chat request, with a token, gets an OpenAI-shaped completion from echo", async () => {
    const res = await fetch(`${app.url}/v1/chat/product-dev`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${await app.token()}` },
      body: JSON.stringify({ model: "echo-1", messages: [{ role: "user", content: "Hello" }] }),
    });
    expect(res.status).toBe(200);
    const body = (await res.json()) as { object: string; choices: { message: { content: string } }[] };
    expect(body.object).toBe("chat.completion");
    expect(body.choices[0]?.message.content).toBe("Hello");
  });
});
