import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createClient, type Client } from "@connectrpc/connect";
import { createAsyncIterable } from "@connectrpc/connect/protocol";
import { create, fromBinary, type MessageInitShape } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import * as v1 from "../../gen/grpc/reflection/v1/reflection_pb.js";
import * as v1alpha from "../../gen/grpc/reflection/v1alpha/reflection_pb.js";
import { json_presence } from "../../gen/apikeyserver/v1/json_options_pb.js";
import { http } from "../../gen/google/api/annotations_pb.js";
import { startTestServer, type TestServer } from "../support/server-harness.js";
import { transportOf } from "../support/transports.js";
import { bufBinary, run } from "../support/server-clients.js";

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer();
});
afterAll(async () => {
  await server.close();
});

const allServices = [
  "apikeyserver.v1.ChatService",
  "apikeyserver.v1.HealthService",
  "grpc.health.v1.Health",
  "grpc.reflection.v1.ServerReflection",
  "grpc.reflection.v1alpha.ServerReflection",
];

describe("buf curl, with no proto files", () => {
  it.each([["grpc-v1"], ["grpc-v1alpha"]])("lists the services (%s)", async (protocol) => {
    const res = await run(bufBinary, [
      "curl",
      "--list-services",
      "--reflect-protocol",
      protocol,
      "--http2-prior-knowledge",
      server.baseUrl,
    ]);
    expect(res.stderr).toBe("");
    expect(res.stdout.trim().split("\n")).toEqual(allServices);
  });

  it("calls grpc.health.v1.Health/Check over gRPC", async () => {
    const res = await run(bufBinary, [
      "curl",
      "--protocol",
      "grpc",
      "--http2-prior-knowledge",
      `${server.baseUrl}/grpc.health.v1.Health/Check`,
    ]);
    expect(res.code).toBe(0);
    expect(JSON.parse(res.stdout)).toEqual({ status: "SERVING" });
  });

  it("resolves the whole chat schema (google.api, well-known types) to call a chat RPC", async () => {
    const res = await run(bufBinary, [
      "curl",
      "--protocol",
      "grpc",
      "--http2-prior-knowledge",
      "-d",
      '{"product":"p","model":"m","messages":[{"role":"user","text":"hi"}],"stop_sequences":{"sequences":["x"]},"tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object"}}}]}',
      `${server.baseUrl}/apikeyserver.v1.ChatService/CreateChatCompletion`,
    ]);
    // The request was encoded (so every type was found) and the placeholder service answered.
    expect(JSON.parse(res.stderr)).toEqual({
      code: "unimplemented",
      message: "CreateChatCompletion is not implemented",
    });
  });
});

type Request = MessageInitShape<typeof v1.ServerReflectionRequestSchema>;

/** Sends all requests on one bidi stream and collects the answers, over v1 or v1alpha. */
async function reflect(
  version: "v1" | "v1alpha",
  requests: Request[],
): Promise<v1.ServerReflectionResponse[]> {
  const transport = transportOf("gRPC, HTTP/2", server.baseUrl);
  const out: v1.ServerReflectionResponse[] = [];
  if (version === "v1") {
    const client: Client<typeof v1.ServerReflection> = createClient(v1.ServerReflection, transport);
    const input = createAsyncIterable(requests.map((r) => create(v1.ServerReflectionRequestSchema, r)));
    for await (const res of client.serverReflectionInfo(input)) out.push(res);
  } else {
    const client = createClient(v1alpha.ServerReflection, transport);
    const input = createAsyncIterable(
      requests.map((r) => create(v1alpha.ServerReflectionRequestSchema, r as never)),
    );
    for await (const res of client.serverReflectionInfo(input)) {
      out.push(res as unknown as v1.ServerReflectionResponse);
    }
  }
  return out;
}

function fileNames(res: v1.ServerReflectionResponse | undefined): string[] {
  if (res?.messageResponse.case !== "fileDescriptorResponse")
    throw new Error(`not a file answer: ${res?.messageResponse.case}`);
  return res.messageResponse.value.fileDescriptorProto.map(
    (b) => fromBinary(FileDescriptorProtoSchema, b).name,
  );
}

const chatClosure = [
  "apikeyserver/v1/chat.proto",
  "apikeyserver/v1/json_options.proto",
  "google/protobuf/descriptor.proto",
  "google/api/annotations.proto",
  "google/api/http.proto",
  "google/protobuf/struct.proto",
];

describe.each([["v1" as const], ["v1alpha" as const]])("grpc.reflection.%s", (version) => {
  it("lists services", async () => {
    const [res] = await reflect(version, [
      { host: "h", messageRequest: { case: "listServices", value: "*" } },
    ]);
    expect(res?.validHost).toBe("h");
    expect(res?.originalRequest?.messageRequest).toEqual({ case: "listServices", value: "*" });
    expect(res?.messageResponse.case).toBe("listServicesResponse");
    if (res?.messageResponse.case === "listServicesResponse") {
      expect(res.messageResponse.value.service.map((s) => s.name)).toEqual(allServices);
    }
  });

  it.each([
    { by: "fileByFilename", value: "apikeyserver/v1/chat.proto", first: "apikeyserver/v1/chat.proto" },
    { by: "fileContainingSymbol", value: "apikeyserver.v1.ChatService", first: "apikeyserver/v1/chat.proto" },
    {
      by: "fileContainingSymbol",
      value: "apikeyserver.v1.ChatService.CreateChatCompletion",
      first: "apikeyserver/v1/chat.proto",
    },
    {
      by: "fileContainingSymbol",
      value: "apikeyserver.v1.ChatCompletionRequest.LogitBiasEntry",
      first: "apikeyserver/v1/chat.proto",
    },
    { by: "fileContainingSymbol", value: ".apikeyserver.v1.Usage", first: "apikeyserver/v1/chat.proto" },
    { by: "fileContainingSymbol", value: "google.protobuf.Struct", first: "google/protobuf/struct.proto" },
    {
      by: "fileContainingSymbol",
      value: "grpc.health.v1.HealthCheckResponse.ServingStatus",
      first: "grpc/health/v1/health.proto",
    },
  ] as const)("$by $value → $first and its dependencies", async ({ by, value, first }) => {
    const [res] = await reflect(version, [{ messageRequest: { case: by, value } }]);
    const names = fileNames(res);
    expect(names[0]).toBe(first);
    if (first === "apikeyserver/v1/chat.proto") expect([...names].sort()).toEqual([...chatClosure].sort());
  });

  it("returns complete well-known type files (descriptor.proto has the option messages)", async () => {
    const [res] = await reflect(version, [
      { messageRequest: { case: "fileByFilename", value: "google/protobuf/descriptor.proto" } },
    ]);
    if (res?.messageResponse.case !== "fileDescriptorResponse") throw new Error("no file");
    const file = fromBinary(FileDescriptorProtoSchema, res.messageResponse.value.fileDescriptorProto[0]!);
    expect(file.messageType.map((m) => m.name)).toEqual(
      expect.arrayContaining(["MethodOptions", "FieldOptions"]),
    );
  });

  it("finds the file of an extension and the extension numbers of a type", async () => {
    const [ext, numbers, fieldNumbers] = await reflect(version, [
      {
        messageRequest: {
          case: "fileContainingExtension",
          value: { containingType: "google.protobuf.MethodOptions", extensionNumber: http.number },
        },
      },
      { messageRequest: { case: "allExtensionNumbersOfType", value: "google.protobuf.MethodOptions" } },
      { messageRequest: { case: "allExtensionNumbersOfType", value: ".google.protobuf.FieldOptions" } },
    ]);
    expect(fileNames(ext)[0]).toBe("google/api/annotations.proto");
    expect(numbers?.messageResponse).toEqual({
      case: "allExtensionNumbersResponse",
      value: expect.objectContaining({
        baseTypeName: "google.protobuf.MethodOptions",
        extensionNumber: [http.number],
      }) as unknown,
    });
    expect(fieldNumbers?.messageResponse).toEqual({
      case: "allExtensionNumbersResponse",
      value: expect.objectContaining({
        baseTypeName: "google.protobuf.FieldOptions",
        extensionNumber: [json_presence.number],
      }) as unknown,
    });
  });

  it("answers failures inside error_response and keeps the stream going", async () => {
    const responses = await reflect(version, [
      { messageRequest: { case: "fileByFilename", value: "nope.proto" } },
      { messageRequest: { case: "fileContainingSymbol", value: "no.such.Symbol" } },
      {
        messageRequest: {
          case: "fileContainingExtension",
          value: { containingType: "google.protobuf.MethodOptions", extensionNumber: 1 },
        },
      },
      { messageRequest: { case: "allExtensionNumbersOfType", value: "no.such.Type" } },
      {},
      { messageRequest: { case: "listServices", value: "" } },
    ]);
    expect(responses.map((r) => r.messageResponse)).toEqual([
      errorOf(5, "file not found: nope.proto"),
      errorOf(5, "symbol not found: no.such.Symbol"),
      errorOf(5, "extension not found: google.protobuf.MethodOptions 1"),
      errorOf(5, "type not found: no.such.Type"),
      errorOf(3, "empty reflection request"),
      expect.objectContaining({ case: "listServicesResponse" }),
    ]);
  });
});

function errorOf(errorCode: number, errorMessage: string) {
  return { case: "errorResponse", value: expect.objectContaining({ errorCode, errorMessage }) as unknown };
}
