import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createAsyncIterable } from "@connectrpc/connect/protocol";
import { afterEach, describe, expect, it } from "vitest";
import * as v1 from "../../gen/grpc/reflection/v1/reflection_pb.js";
import * as v1alpha from "../../gen/grpc/reflection/v1alpha/reflection_pb.js";
import { startApp, type AppHarness } from "../support/app-harness.js";
import { transportOf } from "../support/transports.js";

let app: AppHarness | undefined;
afterEach(async () => {
  await app?.close();
  app = undefined;
});

/** Asks for the service list over one reflection stream; returns the names or the gRPC error code. */
async function listServices(url: string, version: "v1" | "v1alpha"): Promise<string[] | Code> {
  const transport = transportOf("gRPC, HTTP/2", url);
  const service = version === "v1" ? v1.ServerReflection : v1alpha.ServerReflection;
  const client = createClient(service as typeof v1.ServerReflection, transport);
  const request = create(v1.ServerReflectionRequestSchema, {
    messageRequest: { case: "listServices", value: "" },
  });
  try {
    for await (const res of client.serverReflectionInfo(createAsyncIterable([request]))) {
      if (res.messageResponse.case === "listServicesResponse") {
        return res.messageResponse.value.service.map((s) => s.name);
      }
    }
    return [];
  } catch (err) {
    return ConnectError.from(err).code;
  }
}

describe("API_KEY_SERVER_REFLECTION", () => {
  it.each(["v1", "v1alpha"] as const)("serves reflection (%s) by default", async (version) => {
    app = await startApp();
    expect(await listServices(app.url, version)).toContain("apikeyserver.v1.ChatService");
  });

  it.each(["v1", "v1alpha"] as const)(
    "=false leaves reflection (%s) unregistered: UNIMPLEMENTED",
    async (version) => {
      app = await startApp({ env: { API_KEY_SERVER_REFLECTION: "false" } });
      expect(await listServices(app.url, version)).toBe(Code.Unimplemented);
    },
  );
});
