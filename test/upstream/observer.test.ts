import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import {
  createForwarder,
  type Forwarder,
  type JsonObject,
  type UpstreamCallReport,
} from "../../src/upstream/index.js";
import { captureLog } from "../support/log-capture.js";
import { behaviors, startMockProvider, type MockProvider } from "../support/mock-provider.js";
import { collect, failure, fixture, openAiProvider, plainRequest } from "./helpers.js";

let mock: MockProvider;
let forwarder: Forwarder;
const reports: UpstreamCallReport[] = [];
const log = captureLog();
const chunks = fixture<JsonObject[]>("chat-completion-chunks.json");

beforeAll(async () => {
  mock = await startMockProvider();
  forwarder = createForwarder({
    timeoutMs: 2000,
    logger: log.logger,
    observer: (report) => reports.push(report),
  });
});

beforeEach(() => {
  reports.length = 0;
});

afterAll(async () => {
  await forwarder.close();
  await mock.close();
});

/** The report without its timings, which no test may pin. */
const shape = (r: UpstreamCallReport) => ({
  provider: r.provider.name,
  model: r.model,
  outcome: r.outcome,
  firstEvent: r.firstEventSeconds !== undefined,
});

describe("the forwarder reports each call once, when it settles", () => {
  it.each([
    ["ok", "ok", behaviors.json(200, fixture("chat-completion-plain.json"))],
    ["a provider 500", "upstream_error", behaviors.json(500, { error: { message: "boom" } })],
    ["a provider 429", "rate_limited", behaviors.json(429, { error: { message: "slow down" } })],
    ["a provider 400", "upstream_rejected", behaviors.json(400, { error: { message: "bad request" } })],
    ["a stalled answer", "upstream_timeout", behaviors.stall()],
  ] as const)("unary, %s: outcome %s", async (_name, outcome, behavior) => {
    mock.setBehavior(behavior);
    const call = forwarder.complete(openAiProvider(mock.url), plainRequest, { deadlineMs: Date.now() + 300 });
    if (outcome === "ok") await call;
    else await failure(call);
    expect(reports.map(shape)).toEqual([
      { provider: "main-openai", model: "gpt-4o-mini", outcome, firstEvent: false },
    ]);
    expect(reports[0]?.durationSeconds).toBeGreaterThanOrEqual(0);
  });

  it("unary, the caller cancels: canceled", async () => {
    mock.setBehavior(behaviors.stall());
    const controller = new AbortController();
    const requested = mock.requests.length;
    const call = failure(
      forwarder.complete(openAiProvider(mock.url), plainRequest, { signal: controller.signal }),
    );
    await mock.whenRequested(requested + 1);
    controller.abort();
    await call;
    expect(reports.map(shape)).toEqual([
      { provider: "main-openai", model: "gpt-4o-mini", outcome: "canceled", firstEvent: false },
    ]);
  });

  it("a stream read to its end: ok, with the time to the first event", async () => {
    mock.setBehavior(behaviors.sse(chunks));
    const result = await collect(forwarder.stream(openAiProvider(mock.url), plainRequest));
    expect(result.error).toBeUndefined();
    expect(reports.map(shape)).toEqual([
      { provider: "main-openai", model: "gpt-4o-mini", outcome: "ok", firstEvent: true },
    ]);
    const [report] = reports;
    expect(report?.firstEventSeconds).toBeLessThanOrEqual(report?.durationSeconds ?? -1);
  });

  it("a stream cut after its first event: upstream_error, first event seen", async () => {
    mock.setBehavior(behaviors.sse(chunks.slice(0, 1), "reset"));
    const result = await collect(forwarder.stream(openAiProvider(mock.url), plainRequest));
    expect(result.error).toBeDefined();
    expect(reports.map(shape)).toEqual([
      { provider: "main-openai", model: "gpt-4o-mini", outcome: "upstream_error", firstEvent: true },
    ]);
  });

  it("a consumer that stops reading: abandoned; the same because its caller left: canceled", async () => {
    mock.setBehavior(behaviors.sse(chunks.slice(0, 1), "stall"));
    for await (const _chunk of forwarder.stream(openAiProvider(mock.url), plainRequest)) break;
    const controller = new AbortController();
    for await (const _chunk of forwarder.stream(openAiProvider(mock.url), plainRequest, {
      signal: controller.signal,
    })) {
      controller.abort();
      break;
    }
    expect(reports.map((r) => r.outcome)).toEqual(["abandoned", "canceled"]);
  });

  it("a body without a model string reports model ''", async () => {
    mock.setBehavior(behaviors.json(200, fixture("chat-completion-plain.json")));
    await forwarder.complete(openAiProvider(mock.url), { ...plainRequest, model: 42 });
    expect(reports.map(shape)).toEqual([
      { provider: "main-openai", model: "", outcome: "ok", firstEvent: false },
    ]);
  });
});
