import * as http from "node:http";
import type { AddressInfo } from "node:net";
import { create, toBinary, type DescMethod } from "@bufbuild/protobuf";
import { createContextValues } from "@connectrpc/connect";
import { encodeEnvelope, type UniversalHandler } from "@connectrpc/connect/protocol";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BookSchema, BrokenService, LibraryService } from "../../gen/testing/transcode/v1/transcode_pb.js";
import { createRestHandler, restCaptureInterceptor, restResponseSlotKey } from "../../src/http/index.js";
import { captureLog } from "../support/log-capture.js";

// Handlers that break the protocol contract on purpose, to reach the transcoder's own failure paths.
function fakeHandler(method: DescMethod, fn: () => Promise<unknown>): UniversalHandler {
  return Object.assign(fn, {
    protocolNames: ["connect"],
    service: method.parent,
    method,
    requestPath: `/${method.parent.typeName}/${method.name}`,
    allowedMethods: ["POST"],
    supportedContentType: () => true,
  }) as unknown as UniversalHandler;
}

const log = captureLog();
const secret = "sk-proj-abcdefghijklmnop";
const rest = createRestHandler({
  maxBodyBytes: 1024,
  logger: log.logger,
  handlers: [
    fakeHandler(LibraryService.method.getBook, () => Promise.reject(new Error(`boom ${secret}`))),
    fakeHandler(LibraryService.method.watchShelf, () =>
      Promise.resolve({
        status: 200,
        header: new Headers(),
        body: (async function* () {
          yield encodeEnvelope(0, toBinary(BookSchema, create(BookSchema, { name: "b0" })));
          await Promise.resolve();
          throw new Error(`stream broke ${secret}`);
        })(),
      }),
    ),
  ],
});
const server = http.createServer(rest);
let base = "";

beforeAll(async () => {
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  base = `http://127.0.0.1:${String((server.address() as AddressInfo).port)}`;
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
});

const internal = {
  error: { code: 500, status: "INTERNAL", message: "Internal server error" },
  detail: "Internal server error",
};

describe("REST transcoder failures", () => {
  it("answers 500 and logs a scrubbed cause when a handler throws", async () => {
    log.lines.length = 0;
    const res = await fetch(`${base}/v1/books/x`);
    expect(res.status).toBe(500);
    expect(await res.json()).toStrictEqual(internal);
    expect(log.records()).toMatchObject([
      {
        severity: "ERROR",
        message: "REST transcoder failure",
        path: "/v1/books/x",
        cause: "Error: boom [REDACTED]",
      },
    ]);
    expect(log.text()).not.toContain(secret);
  });

  it("ends an SSE stream with an error event when the stream breaks", async () => {
    log.lines.length = 0;
    const res = await fetch(`${base}/v1/shelves/s:watch`);
    expect(res.status).toBe(200);
    const text = await res.text();
    expect(text).toMatch(/^data: \{"name":"b0",.*\}\n\nevent: error\ndata: (.*)\n\n$/);
    expect(JSON.parse(/event: error\ndata: (.*)\n\n$/.exec(text)?.[1] ?? "")).toStrictEqual(internal);
    expect(log.text()).not.toContain(secret);
    expect(log.records()).toHaveLength(1);
  });

  it.each([
    {
      method: BrokenService.method.badPath,
      error:
        'google.api.http of testing.transcode.v1.BrokenService.BadPath: path variable "nope" is not a scalar field of the request',
    },
    {
      method: BrokenService.method.messagePath,
      error:
        'google.api.http of testing.transcode.v1.BrokenService.MessagePath: path variable "book" is not a scalar field of the request',
    },
    {
      method: BrokenService.method.badBody,
      error:
        'google.api.http of testing.transcode.v1.BrokenService.BadBody: body "nope" is not a field of the request',
    },
    {
      method: BrokenService.method.badResponseBody,
      error:
        'google.api.http of testing.transcode.v1.BrokenService.BadResponseBody: response_body "nope" is not a field of the response',
    },
    {
      method: BrokenService.method.upload,
      error:
        "google.api.http of testing.transcode.v1.BrokenService.Upload: only unary and server-streaming methods can have REST bindings",
    },
    {
      method: BrokenService.method.badTemplate,
      error: 'invalid google.api.http path template "/v1/**/{kind}": "**" must be the last segment',
    },
  ])("refuses the rule of $method.name at construction", ({ method, error }) => {
    const handler = fakeHandler(method, () => Promise.resolve({}));
    expect(() => createRestHandler({ handlers: [handler], maxBodyBytes: 1 })).toThrow(error);
  });

  it("ignores a method without a google.api.http rule", () => {
    const handler = fakeHandler(LibraryService.method.hidden, () => Promise.resolve({}));
    expect(() => createRestHandler({ handlers: [handler], maxBodyBytes: 1 })).not.toThrow();
  });
});

describe("restCaptureInterceptor", () => {
  it("leaves a unary response message in the slot and returns the response unchanged", async () => {
    const slot = { message: undefined as unknown };
    const response = { stream: false, message: create(BookSchema, { name: "b" }) };
    const next = () => Promise.resolve(response);
    const req = { contextValues: createContextValues().set(restResponseSlotKey, slot as never) };
    const out = await restCaptureInterceptor(next as never)(req as never);
    expect(out).toBe(response);
    expect(slot.message).toBe(response.message);
  });

  it("does nothing for calls that are not REST", async () => {
    const response = { stream: false, message: create(BookSchema) };
    const out = await restCaptureInterceptor((() => Promise.resolve(response)) as never)({
      contextValues: createContextValues(),
    } as never);
    expect(out).toBe(response);
  });
});
