import { randomUUID } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { signGrpcRequest, signRequest } from "../../src/auth/index.js";
import { ListModelsRequestSchema } from "../../gen/apikeyserver/v1/chat_pb.js";
import { startApp, type AppHarness } from "../support/app-harness.js";
import { curl } from "../support/server-clients.js";

/**
 * Issue 18, item 3, on the composed app with curl (Node's own HTTP/2 client refuses to send a second
 * `authorization`, curl sends what it is told): a credential header sent twice, or a Bearer token and
 * HMAC headers together, is 400 / INVALID_ARGUMENT naming the ambiguity — never "first wins" — over REST,
 * Connect, gRPC-Web and gRPC, with one WARNING line and no credential in the answer or the log.
 */

const hmacSecret = "hmac-secret-for-the-ambiguity-test-0123456789";
const product = "product-dev";
const listModels = "/apikeyserver.v1.ChatService/ListModels";
/** ListModelsRequest{product: "product-dev"}: field 1, length-delimited. */
const message = Buffer.concat([Buffer.from([0x0a, product.length]), Buffer.from(product)]);

let app: AppHarness;
let dir: string;
let frameFile: string;

beforeAll(async () => {
  app = await startApp({
    hmac: { "svc-a": { secret: hmacSecret, products: "*" } },
  });
  dir = await mkdtemp(join(tmpdir(), "aks-ambiguous-"));
  const frame = Buffer.alloc(5 + message.length);
  frame.writeUInt32BE(message.length, 1);
  message.copy(frame, 5);
  frameFile = join(dir, "frame.bin");
  await writeFile(frameFile, frame);
});

afterAll(async () => {
  await app.close();
  await rm(dir, { recursive: true, force: true });
});

beforeEach(() => {
  app.logs.lines.length = 0;
});

type Protocol = "rest" | "connect-h1" | "connect-h2" | "grpc-web" | "grpc";

/** What a caller of `protocol` sees: the HTTP status, and the code and message in that protocol's form. */
async function call(
  protocol: Protocol,
  headers: readonly string[],
): Promise<{ status: number; code: string; message: string; raw: string }> {
  const h = headers.flatMap((line) => ["-H", line]);
  switch (protocol) {
    case "rest": {
      const res = await curl([...h, `${app.url}/v1/chat/${product}/models`]);
      const body = JSON.parse(res.body) as { error?: { status: string; message: string } };
      return {
        status: res.status,
        code: body.error?.status ?? "",
        message: body.error?.message ?? "",
        raw: res.stdout,
      };
    }
    case "connect-h1":
    case "connect-h2": {
      const version = protocol === "connect-h2" ? ["--http2-prior-knowledge"] : [];
      const res = await curl([
        ...version,
        ...h,
        "-H",
        "content-type: application/json",
        "--data-binary",
        JSON.stringify({ product }),
        `${app.url}${listModels}`,
      ]);
      const body = JSON.parse(res.body) as { code: string; message: string };
      return { status: res.status, code: body.code, message: body.message, raw: res.stdout };
    }
    case "grpc-web":
    case "grpc": {
      const res = await curl([
        "--http2-prior-knowledge",
        "-D",
        "-",
        ...h,
        "-H",
        `content-type: application/${protocol}+proto`,
        "-H",
        "te: trailers",
        "--data-binary",
        `@${frameFile}`,
        "-o",
        "-",
        `${app.url}${listModels}`,
      ]);
      // gRPC: trailers among curl's dumped headers; gRPC-Web: a trailer frame at the end of the body.
      const text = res.stdout.toLowerCase();
      const status = /grpc-status: ?(\d+)/.exec(text)?.[1] ?? "none";
      const encoded = /grpc-message: ?([^\r\n]*)/.exec(res.stdout)?.[1] ?? "";
      return { status: res.status, code: status, message: decodeURIComponent(encoded), raw: res.stdout };
    }
  }
}

const protocols: readonly Protocol[] = ["rest", "connect-h1", "connect-h2", "grpc-web", "grpc"];
const expectedCode: Readonly<Record<Protocol, string>> = {
  rest: "INVALID_ARGUMENT",
  "connect-h1": "invalid_argument",
  "connect-h2": "invalid_argument",
  "grpc-web": "3",
  grpc: "3",
};

/** HMAC headers (the ambiguity is refused before any signature check, so the signed body does not matter). */
function hmacHeaderLines(protocol: Protocol): string[] {
  const key = { keyId: "svc-a", secret: hmacSecret, nonce: randomUUID() };
  const headers =
    protocol === "rest"
      ? signRequest({ ...key, method: "GET", path: `/v1/chat/${product}/models`, body: "" })
      : signGrpcRequest({ ...key, service: "apikeyserver.v1.ChatService", method: "ListModels", message });
  return Object.entries(headers).map(([name, value]) => `${name}: ${value}`);
}

describe.each(protocols)("ambiguous credentials over %s", (protocol) => {
  it("answers 400 naming the repeated Authorization header, whichever token comes first", async () => {
    const good = await app.token({ claims: { sub: "first" } });
    const other = await app.token({ claims: { sub: "second" } });
    const res = await call(protocol, [`authorization: Bearer ${good}`, `authorization: Bearer ${other}`]);
    expect(res).toMatchObject({
      status: protocol === "grpc" || protocol === "grpc-web" ? 200 : 400,
      code: expectedCode[protocol],
      message: "Ambiguous credentials (the authorization header is sent more than once)",
    });
    expect(app.logs.records().filter((r) => r["message"] === "Authentication failed")).toMatchObject([
      { severity: "WARNING", auth: { reason: "ambiguous_credentials", header: "authorization" } },
    ]);
    for (const secret of [good, other]) {
      expect(res.raw).not.toContain(secret);
      expect(app.logs.text()).not.toContain(secret);
    }
  });

  it("answers 400 to a Bearer token together with HMAC headers", async () => {
    const token = await app.token();
    const hmac = hmacHeaderLines(protocol);
    const res = await call(protocol, [`authorization: Bearer ${token}`, ...hmac]);
    expect(res).toMatchObject({
      code: expectedCode[protocol],
      message: "Ambiguous credentials (both an Authorization header and HMAC headers are sent)",
    });
    expect(app.logs.records().filter((r) => r["message"] === "Authentication failed")).toMatchObject([
      { severity: "WARNING", auth: { reason: "ambiguous_credentials" } },
    ]);
    expect(res.raw).not.toContain(token);
    expect(app.logs.text()).not.toContain(token);
  });

  it("answers 400 to a repeated HMAC header", async () => {
    const hmac = hmacHeaderLines(protocol);
    const signature = hmac.find((line) => line.startsWith("x-api-signature")) ?? "";
    const res = await call(protocol, [...hmac, signature]);
    expect(res).toMatchObject({
      code: expectedCode[protocol],
      message: "Ambiguous credentials (the x-api-signature header is sent more than once)",
    });
  });

  it("still accepts one Bearer token (control)", async () => {
    const res = await call(protocol, [`authorization: Bearer ${await app.token()}`]);
    expect(res.status).toBe(200);
    if (protocol === "grpc" || protocol === "grpc-web") expect(res.code).toBe("0");
  });
});

// The schema import keeps the hand-encoded message honest: field 1 of ListModelsRequest is `product`.
it("encodes ListModelsRequest as the server reads it", () => {
  expect(ListModelsRequestSchema.fields[0]?.name).toBe("product");
  expect(ListModelsRequestSchema.fields[0]?.number).toBe(1);
});
