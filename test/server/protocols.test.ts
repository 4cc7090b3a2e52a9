import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Code, ConnectError, createClient, type Transport } from "@connectrpc/connect";
import * as grpc from "@grpc/grpc-js";
import { HealthService } from "../../gen/apikeyserver/v1/health_pb.js";
import { ChatService } from "../../gen/apikeyserver/v1/chat_pb.js";
import { startTestServer, type TestServer } from "../support/server-harness.js";
import { transportCases } from "../support/transports.js";
import { curl, grpcClient, grpcUnary, loadGrpcPackage } from "../support/server-clients.js";

// SPEC S3: one port, every protocol, both HTTP versions, each exercised with a real client.
let server: TestServer;
beforeAll(async () => {
  server = await startTestServer();
});
afterAll(async () => {
  await server.close();
});

const expectedHealth = {
  status: "ok",
  version: "0.1.0-test",
  products: 2,
  auth_methods: ["jwt", "hmac"],
  secrets_age_seconds: "12",
};

describe("curl", () => {
  it.each([
    { name: "HTTP/1.1", flags: ["--http1.1"], version: "HTTP/1.1" },
    { name: "h2c prior knowledge", flags: ["--http2-prior-knowledge"], version: "HTTP/2" },
  ])("Connect JSON over $name", async ({ flags, version }) => {
    const res = await curl([
      ...flags,
      "-i",
      "-H",
      "content-type: application/json",
      "-d",
      "{}",
      `${server.baseUrl}/apikeyserver.v1.HealthService/Check`,
    ]);
    expect(res.status).toBe(200);
    expect(res.body.startsWith(version)).toBe(true);
    const body = res.body.slice(res.body.indexOf("\r\n\r\n") + 4);
    expect(JSON.parse(body)).toEqual(expectedHealth);
  });

  it.each([["--http1.1"], ["--http2-prior-knowledge"]])(
    "non-RPC paths reach the fallback handler (%s)",
    async (flag) => {
      const res = await curl([flag, `${server.baseUrl}/no/such/route`]);
      expect(res.status).toBe(404);
      expect(JSON.parse(res.body)).toEqual({
        error: { code: 404, status: "NOT_FOUND", message: "Not found" },
        detail: "Not found",
      });
    },
  );

  it("serves several requests on one HTTP/1.1 keep-alive connection", async () => {
    const url = `${server.baseUrl}/no/such/route`;
    const res = await curl(["--http1.1", "-v", url, "--next", "--http1.1", url]);
    expect(res.stderr).toMatch(/Re-using existing connection/);
    expect(res.stderr.match(/< HTTP\/1.1 404/g)).toHaveLength(2);
  });
});

describe("Connect-ES clients", () => {
  const transports: [string, () => Transport][] = transportCases.map((c) => [
    c.name,
    () => c.transport(server.baseUrl),
  ]);

  it.each(transports)("%s: HealthService.Check answers", async (_name, transport) => {
    const res = await createClient(HealthService, transport()).check({});
    expect(res.status).toBe("ok");
    expect(res.authMethods).toEqual(["jwt", "hmac"]);
    expect(res.secretsAgeSeconds).toBe(12n);
  });

  it.each(transports)("%s: chat RPCs are registered and answer UNIMPLEMENTED", async (_name, transport) => {
    const chat = createClient(ChatService, transport());
    const unary = await chat.listModels({ product: "p" }).catch((e: unknown) => e);
    expect(ConnectError.from(unary).code).toBe(Code.Unimplemented);
    const stream = await (async () => {
      for await (const _chunk of chat.streamChatCompletion({ product: "p" })) {
        // no chunk expected
      }
    })().catch((e: unknown) => e);
    expect(ConnectError.from(stream).code).toBe(Code.Unimplemented);
  });
});

describe("@grpc/grpc-js client", () => {
  const pkg = loadGrpcPackage();
  const clients: grpc.Client[] = [];
  afterAll(() => clients.forEach((c) => c.close()));

  it("calls grpc.health.v1.Health/Check over h2c", async () => {
    const client = grpcClient(pkg, "grpc.health.v1.Health", server.port);
    clients.push(client);
    const { error, response } = await grpcUnary(client, "Check", { service: "" });
    expect(error).toBeNull();
    expect(response).toEqual({ status: "SERVING" });
  });

  it("gets UNIMPLEMENTED from the chat service", async () => {
    const client = grpcClient(pkg, "apikeyserver.v1.ChatService", server.port);
    clients.push(client);
    const { error } = await grpcUnary(client, "CreateChatCompletion", { product: "p", model: "m" });
    expect(error?.code).toBe(grpc.status.UNIMPLEMENTED);
    expect(error?.details).toBe("CreateChatCompletion is not implemented");
  });
});
