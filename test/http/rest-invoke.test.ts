import * as http from "node:http";
import type { AddressInfo } from "node:net";
import {
  Code,
  ConnectError,
  createConnectRouter,
  type HandlerContext,
  type Interceptor,
  type ServiceImplSpec,
} from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { LibraryService, type BookQuery } from "../../gen/testing/transcode/v1/transcode_pb.js";
import { composeEdge } from "../../src/edge/index.js";
import { createCallPipeline } from "../../src/call/pipeline.js";
import { createRestHandler, type RestHandler } from "../../src/protocols/rest/rest-handler.js";
import { recordServices } from "../../src/services/record-services.js";
import { captureLog } from "../support/log-capture.js";

/**
 * The in-process invocation of the transcoder: deadlines (connect-timeout-ms / grpc-timeout, capped by
 * maxTimeoutMs as Connect caps them), the shutdown signal, and recordServices, which collects the service
 * specs from the router registrations.
 */

let calls = 0;
const counting: Interceptor = (next) => (req) => {
  calls++;
  return next(req);
};

// Resolved when a "hang" call has started and waits for its signal.
let hanging: (() => void) | undefined;

/** GetBook: "hang" waits for the call's signal and fails with its reason; otherwise tells whether it has a deadline. */
async function getBook(req: BookQuery, ctx: HandlerContext): Promise<{ name: string; tags: string[] }> {
  if (req.name === "hang") {
    ctx.signal.throwIfAborted();
    await new Promise<void>((resolve) => {
      ctx.signal.addEventListener("abort", () => resolve(), { once: true });
      hanging?.();
    });
    throw ctx.signal.reason;
  }
  const timeoutMs = ctx.timeoutMs();
  return { name: req.name, tags: [timeoutMs === undefined ? "no deadline" : "deadline"] };
}

const shutdown = new AbortController();
const services: ServiceImplSpec[] = [];
recordServices(createConnectRouter(), services).service(LibraryService, { getBook });

async function serve(rest: RestHandler): Promise<{ base: string; server: http.Server }> {
  const server = http.createServer(composeEdge({ entries: [], dispatch: rest }));
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return { server, base: `http://127.0.0.1:${String((server.address() as AddressInfo).port)}` };
}

let main: { base: string; server: http.Server };
let closing: { base: string; server: http.Server };

beforeAll(async () => {
  main = await serve(
    createRestHandler({
      services,
      pipeline: createCallPipeline({ logger: captureLog().logger, interceptors: [counting] }),
      maxBodyBytes: 1024,
      maxTimeoutMs: 1000,
    }),
  );
  closing = await serve(
    createRestHandler({
      services,
      pipeline: createCallPipeline({
        logger: captureLog().logger,
        interceptors: [],
        shutdownSignal: shutdown.signal,
      }),
      maxBodyBytes: 1024,
    }),
  );
});

afterAll(async () => {
  for (const { server } of [main, closing]) {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
});

function s7(code: number, status: string, message: string): unknown {
  return { error: { code, status, message }, detail: message };
}

describe("REST deadlines", () => {
  it.each([
    {
      name: "connect-timeout-ms over maxTimeoutMs",
      headers: { "connect-timeout-ms": "5000" },
      json: s7(400, "INVALID_ARGUMENT", "timeout 5000ms must be <= 1000"),
    },
    {
      name: "grpc-timeout over maxTimeoutMs",
      headers: { "grpc-timeout": "2S" },
      json: s7(400, "INVALID_ARGUMENT", "timeout 2000ms must be <= 1000"),
    },
    {
      name: "a malformed connect-timeout-ms",
      headers: { "connect-timeout-ms": "soon" },
      json: s7(400, "INVALID_ARGUMENT", "protocol error: invalid connect timeout value: soon"),
    },
  ])("refuses $name before any interceptor runs", async ({ headers, json }) => {
    calls = 0;
    const res = await fetch(`${main.base}/v1/books/b`, { headers });
    expect(res.status).toBe(400);
    expect(res.headers.get("content-type")).toBe("application/json");
    expect(await res.json()).toStrictEqual(json);
    expect(calls).toBe(0);
  });

  it.each([
    { name: "no deadline header", headers: {}, tag: "no deadline" },
    { name: "connect-timeout-ms", headers: { "connect-timeout-ms": "900" }, tag: "deadline" },
    { name: "grpc-timeout", headers: { "grpc-timeout": "900m" }, tag: "deadline" },
  ])("gives the implementation the deadline of $name", async ({ headers, tag }) => {
    calls = 0;
    const res = await fetch(`${main.base}/v1/books/b`, { headers });
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ name: "b", tags: [tag] });
    expect(calls).toBe(1);
  });

  it("aborts the call's signal when the deadline passes: 504 DEADLINE_EXCEEDED", async () => {
    const res = await fetch(`${main.base}/v1/books/hang`, { headers: { "grpc-timeout": "20m" } });
    expect(res.status).toBe(504);
    expect(await res.json()).toStrictEqual(s7(504, "DEADLINE_EXCEEDED", "the operation timed out"));
  });
});

describe("REST calls and the shutdown signal", () => {
  it("aborts a running call with the shutdown signal's reason, and a later one at once", async () => {
    const started = new Promise<void>((resolve) => (hanging = resolve));
    const answer = fetch(`${closing.base}/v1/books/hang`);
    await started;
    shutdown.abort(new ConnectError("server is shutting down", Code.Unavailable));
    const res = await answer;
    expect(res.status).toBe(503);
    expect(await res.json()).toStrictEqual(s7(503, "UNAVAILABLE", "server is shutting down"));

    const later = await fetch(`${closing.base}/v1/books/hang`);
    expect(later.status).toBe(503);
    expect(await later.json()).toStrictEqual(s7(503, "UNAVAILABLE", "server is shutting down"));
  });
});

describe("recordServices", () => {
  it("records services and single RPCs and forwards every registration to the router", () => {
    const router = createConnectRouter();
    const specs: ServiceImplSpec[] = [];
    const recording = recordServices(router, specs);
    const chained = recording
      .service(LibraryService, { getBook })
      .rpc(LibraryService.method.ping, (req) => ({ kind: req.kind }));
    expect(chained).toBe(recording);
    expect(recording.handlers).toBe(router.handlers);
    expect(router.handlers.map((h) => h.method.name)).toStrictEqual([
      ...LibraryService.methods.map((m) => m.name),
      "Ping",
    ]);
    expect(specs.map((s) => [s.service.typeName, Object.keys(s.methods)])).toStrictEqual([
      ["testing.transcode.v1.LibraryService", LibraryService.methods.map((m) => m.localName)],
      ["testing.transcode.v1.LibraryService", ["ping"]],
    ]);
  });
});
