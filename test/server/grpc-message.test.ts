import * as grpc from "@grpc/grpc-js";
import { create, toBinary } from "@bufbuild/protobuf";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ChatCompletionRequestSchema } from "../../gen/apikeyserver/v1/chat_pb.js";
import { toSpecEncoding } from "../../src/compat/grpc-message.js";
import { startApp, type AppHarness } from "../support/app-harness.js";

describe("grpc-message uses the gRPC spec's percent-encoding", () => {
  it.each([
    ["messages%3A must contain at least one message", "messages: must contain at least one message"],
    ["max_tokens%20exceeds%20a%3Db", "max_tokens exceeds a=b"],
    ["caf%C3%A9%20100%25", "caf%C3%A9 100%25"],
    ["not%zzvalid", "not%zzvalid"],
  ])("%s → %s", (wire, spec) => {
    expect(toSpecEncoding(wire)).toBe(spec);
  });
});

describe("a @grpc/grpc-js caller reads our error messages exactly", () => {
  let app: AppHarness;
  let client: grpc.Client;
  beforeAll(async () => {
    app = await startApp();
    client = new grpc.Client(`127.0.0.1:${app.port}`, grpc.credentials.createInsecure());
  });
  afterAll(async () => {
    client.close();
    await app.close();
  });

  function call(request: Parameters<typeof create<typeof ChatCompletionRequestSchema>>[1], token: string) {
    const metadata = new grpc.Metadata();
    metadata.set("authorization", `Bearer ${token}`);
    return new Promise<grpc.ServiceError>((resolve, reject) => {
      client.makeUnaryRequest(
        "/apikeyserver.v1.ChatService/CreateChatCompletion",
        (message: typeof request) =>
          Buffer.from(toBinary(ChatCompletionRequestSchema, create(ChatCompletionRequestSchema, message))),
        (bytes: Buffer) => bytes,
        request,
        metadata,
        (err) => (err ? resolve(err) : reject(new Error("expected an error"))),
      );
    });
  }

  it("keeps ':' and '=' literal (grpc-js decodes with decodeURI, which would leave %3A in place)", async () => {
    const err = await call({ product: "product-dev", model: "echo-1", messages: [] }, await app.token());
    expect(err.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(err.details).toBe("messages: must contain at least one message");
  });

  it("a tool's parameters holding a NaN number (JSON cannot express it) is 400, not 500", async () => {
    const err = await call(
      {
        product: "product-dev",
        model: "echo-1",
        messages: [{ role: "user", content: { case: "text", value: "hi" } }],
        tools: [{ type: "function", function: { name: "f", parameters: { x: Number.NaN } } }],
      },
      await app.token(),
    );
    expect(err.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(err.details).toMatch(/^Invalid request: .*Value cannot be NaN or Infinity/);
  });

  it("plain S7 messages are unchanged", async () => {
    const err = await call({ product: "nope", model: "echo-1" }, await app.token());
    expect(err.code).toBe(grpc.status.NOT_FOUND);
    expect(err.details).toBe("Product not found");
  });
});
