import * as http from "node:http";
import type { AddressInfo } from "node:net";
import { create, type DescMethod, type Message } from "@bufbuild/protobuf";
import {
  createMethodImplSpec,
  createServiceImplSpec,
  type Interceptor,
  type ServiceImplSpec,
} from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BookSchema, BrokenService, LibraryService } from "../../gen/testing/transcode/v1/transcode_pb.js";
import { composeEdge } from "../../src/edge/index.js";
import { createCallPipeline } from "../../src/call/pipeline.js";
import { createRestHandler } from "../../src/protocols/rest/rest-handler.js";
import { captureLog } from "../support/log-capture.js";

const log = captureLog();
const secret = "sk-proj-abcdefghijklmnop";

/** A message whose `name` cannot be read: the REST writer fails on it, after the call succeeded. */
function broken<T extends Message>(message: T): T {
  return new Proxy(message, {
    get(target, prop, receiver) {
      if (prop === "name") throw new Error(`boom ${secret}`);
      return Reflect.get(target, prop, receiver) as unknown;
    },
  });
}

// An interceptor that breaks the contract on purpose (answers with unreadable messages), to reach the
// transcoder's own failure paths.
const breaking: Interceptor = (next) => async (req) => {
  const res = await next(req);
  if (!res.stream) return { ...res, message: broken(res.message) };
  const messages = res.message;
  return {
    ...res,
    message: (async function* () {
      let i = 0;
      for await (const m of messages) yield i++ === 0 ? m : broken(m);
    })(),
  };
};

const rest = createRestHandler({
  maxBodyBytes: 1024,
  pipeline: createCallPipeline({ logger: log.logger, interceptors: [breaking] }),
  services: [
    createServiceImplSpec<typeof LibraryService>(LibraryService, {
      getBook: (req) => req,
      async *watchShelf() {
        yield create(BookSchema, { name: "b0" });
        yield await Promise.resolve(create(BookSchema, { name: "b1" }));
      },
    }),
  ],
});
const pipeline = createCallPipeline({ logger: log.logger, interceptors: [] });
const server = http.createServer(composeEdge({ entries: [], dispatch: rest }));
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
    expect(() => createRestHandler({ services: [only(method)], pipeline, maxBodyBytes: 1 })).toThrow(error);
  });

  it("ignores a method without a google.api.http rule", () => {
    const services = [only(LibraryService.method.hidden)];
    expect(() => createRestHandler({ services, pipeline, maxBodyBytes: 1 })).not.toThrow();
  });
});

/** A service spec with one method only (its implementation is never called). */
function only(method: DescMethod): ServiceImplSpec {
  return {
    service: method.parent,
    methods: { [method.localName]: createMethodImplSpec(method, (() => ({})) as never) },
  };
}
