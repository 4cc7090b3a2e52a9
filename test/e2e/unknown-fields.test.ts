import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startApp, type AppHarness } from "../support/app-harness.js";
import { createE2eClients, e2eProducts, protocols, type E2eClients } from "../support/e2e-clients.js";
import { behaviors, startMockProvider, type MockProvider } from "../support/mock-provider.js";
import { fixture } from "../upstream/helpers.js";

// A field the contract does not know yet, on each protocol (docs/architecture.md, "Fields the contract
// does not know"): in a request over REST or the OpenAI route it is a 400 naming it; in a provider's answer
// it is dropped on every protocol (REST and OpenAI JSON as for Connect and gRPC messages), so every caller
// reads the same answer, the contract's.

describe("fields the contract does not know", () => {
  let mock: MockProvider;
  let app: AppHarness;
  let clients: E2eClients;
  let auth: string;
  const hello = { model: "gpt-4o-mini", messages: [{ role: "user", content: "Hello" }] };

  beforeAll(async () => {
    mock = await startMockProvider();
    app = await startApp({ products: e2eProducts(mock.url) });
    clients = createE2eClients(app.url);
    auth = `Bearer ${await app.token({ claims: { products: ["product-dev"] } })}`;
  });
  afterAll(async () => {
    clients.close();
    await app.close();
    await mock.close();
  });

  const known = fixture("chat-completion-plain.json");
  const choices = known["choices"] as Record<string, unknown>[];
  const withNewFields = {
    ...known,
    brand_new_field: { detail: "not in the contract yet" },
    choices: choices.map((c) => ({ ...c, new_choice_field: [1, 2] })),
  };

  it.each(protocols)("%s: a new field in the provider's answer is dropped", async (protocol) => {
    mock.setBehavior(behaviors.json(200, withNewFields));
    const outcome = await clients.chat(protocol, "product-dev", hello, { authorization: auth });
    expect(outcome.code).toBe("OK");
    expect(outcome.body).toStrictEqual(known);
    if (protocol === "rest") expect(outcome.raw).not.toContain("brand_new_field");
  });

  it("OpenAI route: a new field in the provider's answer is dropped", async () => {
    mock.setBehavior(behaviors.json(200, withNewFields));
    const res = await fetch(`${app.url}/openai/product-dev/v1/chat/completions`, {
      method: "POST",
      headers: { authorization: auth, "content-type": "application/json" },
      body: JSON.stringify(hello),
    });
    expect(res.status).toBe(200);
    const text = await res.text();
    expect(text).not.toContain("new_choice_field");
    expect(JSON.parse(text)).toStrictEqual(known);
  });

  it("REST: a new request field is a 400 naming it, and nothing goes upstream", async () => {
    const before = mock.requests.length;
    const outcome = await clients.chat(
      "rest",
      "product-dev",
      { ...hello, brand_new_knob: true },
      { authorization: auth },
    );
    expect({ status: outcome.status, message: outcome.message }).toEqual({
      status: 400,
      message: 'Unknown field "brand_new_knob"',
    });
    expect(mock.requests.length).toBe(before);
  });

  it("OpenAI route: a new request field is a 400 naming it in OpenAI's error body", async () => {
    const before = mock.requests.length;
    const res = await fetch(`${app.url}/openai/product-dev/v1/chat/completions`, {
      method: "POST",
      headers: { authorization: auth, "content-type": "application/json" },
      body: JSON.stringify({ ...hello, messages: [{ role: "user", content: "Hi", brand_new_knob: 1 }] }),
    });
    expect(res.status).toBe(400);
    expect(((await res.json()) as { error: { message: string } }).error.message).toBe(
      'Unknown field "brand_new_knob"',
    );
    expect(mock.requests.length).toBe(before);
  });
});
