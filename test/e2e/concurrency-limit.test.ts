import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startApp, type AppHarness } from "../support/app-harness.js";
import { createE2eClients, e2eProducts, protocols, type E2eClients } from "../support/e2e-clients.js";
import { behaviors, startMockProvider, type MockProvider } from "../support/mock-provider.js";

/**
 * Issue 18, item 9, on the composed app: one caller may have at most
 * API_KEY_SERVER_MAX_CONCURRENT_CALLS_PER_CALLER calls open at once (streams and unary calls together);
 * one more is 429 / RESOURCE_EXHAUSTED `Too many concurrent calls` (exactly; the limit is stated in the error
 * details), over REST, Connect and gRPC. Other
 * callers are not affected, and a slot is free again once a stream ends (here: its caller cancels).
 */

const limit = 2;
const request = { model: "gpt-4o-mini", messages: [{ role: "user", content: "Hello" }] };
const refusal = "Too many concurrent calls";
/** Where the limit is stated: the ErrorInfo metadata (gRPC, Connect) and `error.details` (REST). */
const limitMetadata = { limit: "concurrent_calls", max: String(limit) };
const chunk = {
  id: "c",
  object: "chat.completion.chunk",
  created: 1,
  model: "gpt-4o-mini",
  choices: [{ index: 0, delta: { content: "Hi" }, finish_reason: null }],
};

describe("concurrent calls per caller", () => {
  let mock: MockProvider;
  let app: AppHarness;
  let clients: E2eClients;
  let busy: string;
  let other: string;

  beforeAll(async () => {
    mock = await startMockProvider();
    // Every upstream stream sends one chunk and then nothing more: the streams stay open until cancelled.
    mock.setBehavior(behaviors.sse([chunk], "stall"));
    app = await startApp({
      products: e2eProducts(mock.url),
      env: { API_KEY_SERVER_MAX_CONCURRENT_CALLS_PER_CALLER: String(limit) },
    });
    clients = createE2eClients(app.url);
    busy = `Bearer ${await app.token({ claims: { sub: "busy" } })}`;
    other = `Bearer ${await app.token({ claims: { sub: "other" } })}`;
  });
  afterAll(async () => {
    clients.close();
    await app.close();
    await mock.close();
  });

  it("refuses one call more than the limit over every protocol, and frees the slot when a stream ends", async () => {
    const cancels = [new AbortController(), new AbortController()] as const;
    const open = [
      clients.stream("rest", "product-dev", request, { authorization: busy, signal: cancels[0].signal }),
      clients.stream("grpc", "product-dev", request, { authorization: busy, signal: cancels[1].signal }),
    ];
    await mock.whenRequested(2);

    for (const protocol of protocols) {
      const unary = await clients.listModels(protocol, "product-dev", { authorization: busy });
      expect({ protocol, code: unary.code, message: unary.message }).toEqual({
        protocol,
        code: "RESOURCE_EXHAUSTED",
        message: refusal,
      });
      if (protocol === "rest") {
        expect(unary.status).toBe(429);
        expect(unary.body).toMatchObject({
          error: { details: [{ reason: "too_many_concurrent_calls", metadata: limitMetadata }] },
          detail: refusal,
        });
      } else {
        expect(unary.errorMetadata).toEqual(limitMetadata);
      }
      const stream = await clients.stream(protocol, "product-dev", request, { authorization: busy });
      expect({ protocol, end: stream.end }).toMatchObject({
        protocol,
        end: { code: "RESOURCE_EXHAUSTED", message: refusal },
      });
    }
    expect(mock.requests).toHaveLength(2);

    // Another caller is not affected.
    expect((await clients.listModels("connect", "product-dev", { authorization: other })).code).toBe("OK");

    // One stream ends (its caller cancels): the busy caller has a slot again.
    cancels[0].abort();
    await open[0]?.catch(() => undefined);
    let after = await clients.listModels("connect", "product-dev", { authorization: busy });
    for (let i = 0; i < 100 && after.code !== "OK"; i++) {
      await new Promise((resolve) => setTimeout(resolve, 20));
      after = await clients.listModels("connect", "product-dev", { authorization: busy });
    }
    expect(after.code).toBe("OK");
    cancels[1].abort();
    await open[1]?.catch(() => undefined);
  });
});
