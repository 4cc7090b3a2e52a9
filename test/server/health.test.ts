import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import * as grpc from "@grpc/grpc-js";
import { HealthService } from "../../gen/apikeyserver/v1/health_pb.js";
import { Health, HealthCheckResponse_ServingStatus as Status } from "../../gen/grpc/health/v1/health_pb.js";
import { registerHealth } from "../../src/services/health.js";
import { readyState, startTestServer, type TestServer } from "../support/server-harness.js";
import { curl, grpcClient, grpcUnary, loadGrpcPackage } from "../support/server-clients.js";
import { transportOf } from "../support/transports.js";

const notReady = { ready: false, products: 0, authMethods: [], secretsAgeSeconds: 0 };

describe.each([
  { mode: "subscribe", pollHealth: false },
  { mode: "polling", pollHealth: true },
])("health ($mode)", ({ pollHealth }) => {
  let server: TestServer;
  const pkg = loadGrpcPackage();
  let grpcHealth: grpc.Client;
  beforeAll(async () => {
    server = await startTestServer({ pollHealth });
    grpcHealth = grpcClient(pkg, "grpc.health.v1.Health", server.port);
  });
  afterAll(async () => {
    grpcHealth.close();
    await server.close();
  });
  const setReady = (ready: boolean) => {
    server.readiness.current = ready ? readyState : notReady;
    server.notify();
  };

  it("HealthService.Check answers 200 with the JSON status when ready", async () => {
    setReady(true);
    const res = await curl([
      "-H",
      "content-type: application/json",
      "-d",
      "{}",
      `${server.baseUrl}/apikeyserver.v1.HealthService/Check`,
    ]);
    expect(res.status).toBe(200);
    expect(JSON.parse(res.body)).toEqual({
      status: "ok",
      version: "0.1.0-test",
      products: 2,
      auth_methods: ["jwt", "hmac"],
      secrets_age_seconds: "12",
    });
  });

  it("HealthService.Check answers 503 UNAVAILABLE 'Service not ready' when not ready", async () => {
    setReady(false);
    const res = await curl([
      "-H",
      "content-type: application/json",
      "-d",
      "{}",
      `${server.baseUrl}/apikeyserver.v1.HealthService/Check`,
    ]);
    expect(res.status).toBe(503);
    const body = JSON.parse(res.body) as { code: string; message: string; details: { type: string }[] };
    expect(body.code).toBe("unavailable");
    expect(body.message).toBe("Service not ready");
    // The ErrorInfo detail carries reason "not_ready" for the REST writer (SPEC S7 → 503).
    expect(body.details.map((d) => d.type)).toEqual(["google.rpc.ErrorInfo"]);
    const err = await createClient(HealthService, transportOf("Connect JSON, HTTP/2", server.baseUrl))
      .check({})
      .catch((e: unknown) => ConnectError.from(e));
    expect(err).toBeInstanceOf(ConnectError);
    expect([(err as ConnectError).code, (err as ConnectError).rawMessage]).toEqual([
      Code.Unavailable,
      "Service not ready",
    ]);
    setReady(true);
  });

  it.each([
    { service: "", ready: true, status: "SERVING" },
    { service: "apikeyserver.v1.ChatService", ready: true, status: "SERVING" },
    { service: "", ready: false, status: "NOT_SERVING" },
    { service: "apikeyserver.v1.ChatService", ready: false, status: "NOT_SERVING" },
  ])("grpc Check($service) is $status when ready=$ready (grpc-js)", async ({ service, ready, status }) => {
    setReady(ready);
    const { error, response } = await grpcUnary(grpcHealth, "Check", { service });
    expect(error).toBeNull();
    expect(response).toEqual({ status });
    setReady(true);
  });

  it("grpc Check of an unknown service is NOT_FOUND (grpc-js)", async () => {
    const { error } = await grpcUnary(grpcHealth, "Check", { service: "no.such.Service" });
    expect(error?.code).toBe(grpc.status.NOT_FOUND);
  });

  it("grpc List returns every known service's status (grpc-js)", async () => {
    setReady(false);
    const { error, response } = await grpcUnary(grpcHealth, "List", {});
    expect(error).toBeNull();
    expect(response).toEqual({
      statuses: { "": { status: "NOT_SERVING" }, "apikeyserver.v1.ChatService": { status: "NOT_SERVING" } },
    });
    setReady(true);
  });

  it("grpc Watch sends the current status, then every change", async () => {
    setReady(true);
    const client = createClient(Health, transportOf("gRPC, HTTP/2", server.baseUrl));
    const abort = new AbortController();
    const stream = client.watch({ service: "" }, { signal: abort.signal })[Symbol.asyncIterator]();
    expect((await stream.next()).value).toMatchObject({ status: Status.SERVING });
    setReady(false);
    expect((await stream.next()).value).toMatchObject({ status: Status.NOT_SERVING });
    setReady(true);
    expect((await stream.next()).value).toMatchObject({ status: Status.SERVING });
    abort.abort();
    const end = await stream.next().catch((e: unknown) => ConnectError.from(e));
    expect(end).toBeInstanceOf(ConnectError);
    expect((end as ConnectError).code).toBe(Code.Canceled);
  });

  it("grpc Watch of an unknown service sends SERVICE_UNKNOWN and keeps the stream open", async () => {
    const client = createClient(Health, transportOf("gRPC, HTTP/2", server.baseUrl));
    const abort = new AbortController();
    const call = client.watch({ service: "no.such.Service" }, { signal: abort.signal });
    const stream = call[Symbol.asyncIterator]();
    expect((await stream.next()).value).toMatchObject({ status: Status.SERVICE_UNKNOWN });
    const next = stream.next().then(
      () => "ended",
      (e: unknown) => ConnectError.from(e),
    );
    // A full round trip on the same connection: had the server ended the stream, `next` would be settled.
    setReady(false);
    await client.check({ service: "" });
    setReady(true);
    expect(await Promise.race([next, Promise.resolve("open")])).toBe("open");
    abort.abort();
    const end = await next;
    expect(end).toBeInstanceOf(ConnectError);
    expect((end as ConnectError).code).toBe(Code.Canceled);
  });
});

it("registerHealth rejects a bad poll interval", () => {
  const router = { service: () => router } as never;
  expect(() =>
    registerHealth(router, { readiness: () => readyState, version: "x", pollIntervalMs: 0 }),
  ).toThrow("pollIntervalMs");
});
