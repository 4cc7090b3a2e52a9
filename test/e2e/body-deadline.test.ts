import { once } from "node:events";
import * as http2 from "node:http2";
import * as net from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startApp, type AppHarness } from "../support/app-harness.js";

/**
 * Issue 18, item 10, on the composed app: a request body that has not arrived within
 * API_KEY_SERVER_BODY_TIMEOUT_SECONDS is answered 408 (gRPC: DEADLINE_EXCEEDED) instead of holding the
 * call open for Node's 300 s — over HTTP/1.1 and HTTP/2, for REST, Connect and gRPC. The clients send a
 * few bytes of a longer body and then nothing.
 */

let app: AppHarness;
let token: string;

beforeAll(async () => {
  app = await startApp({ env: { API_KEY_SERVER_BODY_TIMEOUT_SECONDS: "1" } });
  token = await app.token();
});
afterAll(() => app.close());

const accessLines = (path: string) =>
  app.logs
    .records()
    .filter((r) => (r["httpRequest"] as { requestUrl?: string } | undefined)?.requestUrl === path);

async function waitFor(condition: () => boolean): Promise<void> {
  for (let i = 0; i < 100 && !condition(); i++) await new Promise((resolve) => setTimeout(resolve, 20));
}

/** HTTP/1.1 over a raw socket: the headers promise 100 bytes, 10 come. Resolves with all the server sent. */
async function slowHttp1(path: string, contentType: string): Promise<string> {
  const socket = net.connect(app.port, "127.0.0.1");
  await once(socket, "connect");
  let received = "";
  socket.on("data", (d: Buffer) => (received += d.toString("latin1")));
  socket.write(
    `POST ${path} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer ${token}\r\ncontent-type: ${contentType}\r\n` +
      "content-length: 100\r\n\r\n" +
      '{"model":',
  );
  await once(socket, "close");
  return received;
}

/** HTTP/2: part of a body, then nothing; resolves with the response headers (and trailers). */
async function slowHttp2(path: string, contentType: string): Promise<Record<string, unknown>> {
  const session = http2.connect(app.url);
  try {
    const stream = session.request({
      ":method": "POST",
      ":path": path,
      "content-type": contentType,
      authorization: `Bearer ${token}`,
      te: "trailers",
    });
    stream.write(Buffer.from([0, 0, 0, 0, 100, 10]));
    const headers: Record<string, unknown> = {};
    stream.on("response", (h) => void Object.assign(headers, h));
    stream.on("trailers", (t: http2.IncomingHttpHeaders) => void Object.assign(headers, t));
    stream.on("data", () => undefined);
    stream.on("error", () => undefined);
    await once(stream, "close");
    return headers;
  } finally {
    session.close();
  }
}

describe("body read deadline", () => {
  it.each([
    ["REST", "/v1/chat/product-dev", "application/json"],
    ["Connect", "/apikeyserver.v1.ChatService/CreateChatCompletion", "application/json"],
  ])("answers 408 to a %s body that stops arriving, over HTTP/1.1", async (_name, path, contentType) => {
    app.logs.lines.length = 0;
    const received = await slowHttp1(path, contentType);
    expect(received).toMatch(/^HTTP\/1\.1 408 Request Timeout\r\n/);
    expect(received.toLowerCase()).toContain("connection: close");
    // One access line saying what happened, and no ERROR (the read that stopped is no server failure).
    await waitFor(() => accessLines(path).length > 0);
    expect(accessLines(path)).toMatchObject([{ httpRequest: { status: 408 }, code: "DEADLINE_EXCEEDED" }]);
    // The server cut the read; the client did not go away.
    expect(accessLines(path)[0]).not.toHaveProperty("cut");
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(accessLines(path)).toHaveLength(1);
    expect(app.logs.records().filter((r) => r["severity"] === "ERROR")).toEqual([]);
  });

  it.each([
    ["REST", "/v1/chat/product-dev", "application/json", { ":status": 408 }],
    ["Connect", "/apikeyserver.v1.ChatService/CreateChatCompletion", "application/json", { ":status": 408 }],
    [
      "gRPC",
      "/apikeyserver.v1.ChatService/CreateChatCompletion",
      "application/grpc",
      { ":status": 200, "grpc-status": "4", "grpc-message": "Request body not received in time" },
    ],
  ])("answers a %s body that stops arriving over HTTP/2", async (_name, path, contentType, expected) => {
    const before = accessLines(path).length;
    expect(await slowHttp2(path, contentType)).toMatchObject(expected);
    // One access line, saying the deadline (not 200/OK for gRPC's trailers-only answer, not a cancel).
    await waitFor(() => accessLines(path).length > before);
    const lines = accessLines(path).slice(before);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({ code: "DEADLINE_EXCEEDED" });
    expect(lines[0]).not.toHaveProperty("cut");
  });

  it("leaves a request alone whose body arrives in time", async () => {
    const res = await fetch(`${app.url}/v1/chat/product-dev`, {
      method: "POST",
      headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
      body: JSON.stringify({ model: "echo-1", messages: [{ role: "user", content: "hi" }] }),
    });
    expect(res.status).toBe(200);
    await res.arrayBuffer();
  });
});
