import { createHmac } from "node:crypto";
import { readFile } from "node:fs/promises";
import { describe, expect, it } from "vitest";
import {
  canonicalQuery,
  sha256Hex,
  signGrpcRequest,
  signRequest,
  stringToSign,
} from "../../src/auth/index.js";
import { minHmacSecretLength } from "../../src/secrets/index.js";

/** The worked example of docs/auth.md; a change here is a breaking change for every caller. */
const example = {
  keyId: "svc-a",
  secret: "example-secret-do-not-use-in-prod",
  method: "POST",
  path: "/v1/chat/product-dev",
  query: "b=2&a=hello%20world&a=1",
  body: '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Hello"}]}',
  timestamp: 1767225600,
  nonce: "2b7e1516-28ae-4d2a",
} as const;

describe("HMAC signing", () => {
  it("docs/auth.md uses this example, and every secret it shows is long enough for the server", async () => {
    const doc = await readFile(new URL("../../docs/auth.md", import.meta.url), "utf8");
    expect(doc).toContain(`Secret \`${example.secret}\``);
    expect(doc).toContain(`-hmac '${example.secret}'`);
    const shown = [...doc.matchAll(/-hmac '([^']+)'|printf %s '([^']+)' > \/tmp\/hmac-secret/g)].map(
      (m) => m[1] ?? m[2] ?? "",
    );
    expect(shown.length).toBe(2);
    for (const secret of shown) expect(secret.length).toBeGreaterThanOrEqual(minHmacSecretLength);
  });

  it("reproduces the documented worked example", () => {
    expect(sha256Hex(example.body)).toBe("3da6da474e7773516d1334115267c665022464a7d91afea642650d7a6d9fe937");
    expect(
      stringToSign({
        method: "post",
        path: example.path,
        query: example.query,
        bodySha256: sha256Hex(example.body),
        timestamp: "1767225600",
        keyId: example.keyId,
        nonce: example.nonce,
      }),
    ).toBe(
      [
        "AKS1-HMAC-SHA256",
        "POST",
        "/v1/chat/product-dev",
        "a=1&a=hello%20world&b=2",
        "3da6da474e7773516d1334115267c665022464a7d91afea642650d7a6d9fe937",
        "1767225600",
        "svc-a",
        "2b7e1516-28ae-4d2a",
      ].join("\n"),
    );
    expect(signRequest(example)).toEqual({
      "x-api-key-id": "svc-a",
      "x-api-timestamp": "1767225600",
      "x-api-nonce": "2b7e1516-28ae-4d2a",
      "x-api-signature": "6b6acb1fe05742f343bea45add26195be2f15adbd6b168dc59ba5f9a20f860ed",
    });
  });

  it("leaves the nonce header out and signs an empty last line without a nonce", () => {
    const { nonce: _nonce, ...rest } = example;
    const headers = signRequest(rest);
    expect(Object.keys(headers).sort()).toEqual(["x-api-key-id", "x-api-signature", "x-api-timestamp"]);
    const expected = createHmac("sha256", example.secret)
      .update(
        `AKS1-HMAC-SHA256\nPOST\n/v1/chat/product-dev\na=1&a=hello%20world&b=2\n${sha256Hex(example.body)}\n1767225600\nsvc-a\n`,
      )
      .digest("hex");
    expect(headers["x-api-signature"]).toBe(expected);
  });

  it.each([
    ["", ""],
    ["b=2&a=1", "a=1&b=2"],
    ["a=2&a=1", "a=1&a=2"],
    ["q=a+b", "q=a%20b"],
    ["q=a%20b", "q=a%20b"],
    ["flag", "flag="],
    ["&&x=1&", "x=1"],
    ["k=%7e~%21!", "k=~~%21%21"],
    ["path=%2Fa%2fb", "path=%2Fa%2Fb"],
    ["%C3%A9=%E2%82%AC", "%C3%A9=%E2%82%AC"],
    ["x=a=b", "x=a%3Db"],
  ])("canonicalises the query %j as %j", (raw, canonical) => {
    expect(canonicalQuery(raw)).toBe(canonical);
  });

  it("refuses an invalid percent-encoding", () => {
    expect(() => canonicalQuery("a=%zz")).toThrow(URIError);
  });

  it("signs a gRPC call as POST /<service>/<method> over the message bytes", () => {
    const message = new Uint8Array([
      0x0a, 0x0b, 0x70, 0x72, 0x6f, 0x64, 0x75, 0x63, 0x74, 0x2d, 0x64, 0x65, 0x76,
    ]);
    expect(
      signGrpcRequest({
        keyId: "svc-a",
        secret: "s3cret-s3cret",
        service: "apikeyserver.v1.ChatService",
        method: "ListModels",
        message,
        timestamp: 1767225600,
      }),
    ).toEqual(
      signRequest({
        keyId: "svc-a",
        secret: "s3cret-s3cret",
        method: "POST",
        path: "/apikeyserver.v1.ChatService/ListModels",
        body: message,
        timestamp: 1767225600,
      }),
    );
  });
});
