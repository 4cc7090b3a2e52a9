import { cors as connectCors } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import { createCors, type CorsOptions } from "../../src/edge/cors.js";
import { createOriginMatcher, parseOriginRule, type OriginRule } from "../../src/lib/origin.js";

const lists = {
  allowedMethods: connectCors.allowedMethods,
  allowedHeaders: [...connectCors.allowedHeaders, "Authorization"],
  exposedHeaders: [...connectCors.exposedHeaders, "Retry-After"],
} satisfies Omit<CorsOptions, "origins">;

const app = "https://app.example.com";
const cors = createCors({ ...lists, origins: [app, "http://localhost:5173", "https://*.tenant.example"] });

/** What any non-preflight request from the allowed `app` origin gets. */
const allowedAnswer = {
  kind: "continue",
  headers: {
    vary: "Origin",
    "access-control-allow-origin": app,
    "access-control-expose-headers":
      "grpc-status, grpc-message, grpc-status-details-bin, content-encoding, connect-content-encoding, retry-after",
  },
};

const preflight = (origin: string | string[] | undefined, requestMethod: string | undefined = "POST") =>
  cors.decide({ method: "OPTIONS", origin, accessControlRequestMethod: requestMethod });
const actual = (origin: string | undefined, method = "POST") =>
  cors.decide({ method, origin, accessControlRequestMethod: undefined });

describe("createCors: preflight", () => {
  it.each([app, "http://localhost:5173", "https://a.tenant.example", "https://a-1.b.tenant.example"])(
    "answers 204 with the allow headers for the allowed origin %s",
    (origin) => {
      expect(preflight(origin)).toEqual({
        kind: "preflight",
        status: 204,
        headers: {
          vary: "Origin",
          "access-control-allow-origin": origin,
          "access-control-allow-methods": "POST, GET",
          "access-control-allow-headers": [...connectCors.allowedHeaders, "authorization"]
            .map((h) => h.toLowerCase())
            .join(", "),
          "access-control-max-age": "7200",
        },
      });
    },
  );

  it.each([
    ["another site", "https://evil.example"],
    ["the right host over http", "http://app.example.com"],
    ["another port", "http://localhost:5174"],
    ["a suffix that is not a subdomain", "https://eviltenant.example"],
    ["the pattern's apex", "https://tenant.example"],
    ["a lookalike ending", "https://a.tenant.example.evil"],
    ["an opaque origin", "null"],
    ["uppercase (browsers never send it)", "https://APP.example.com"],
    ["two Origin headers", [app, app]],
  ])("refuses %s with 403 and no CORS header but Vary", (_, origin) => {
    expect(preflight(origin)).toEqual({ kind: "preflight", status: 403, headers: { vary: "Origin" } });
  });

  it("takes an OPTIONS without Access-Control-Request-Method for an ordinary request", () => {
    expect(cors.decide({ method: "OPTIONS", origin: app, accessControlRequestMethod: undefined })).toEqual(
      allowedAnswer,
    );
  });

  it("takes an OPTIONS without Origin for an ordinary (same-origin or non-browser) request", () => {
    expect(preflight(undefined)).toEqual({ kind: "continue", headers: { vary: "Origin" } });
  });

  it("honours maxAgeSeconds", () => {
    const short = createCors({ ...lists, origins: [app], maxAgeSeconds: 60 });
    const decision = short.decide({ method: "OPTIONS", origin: app, accessControlRequestMethod: "GET" });
    expect(decision.headers["access-control-max-age"]).toBe("60");
  });
});

describe("createCors: actual requests", () => {
  it("adds the allowed origin, the exposed headers and Vary", () => {
    expect(actual(app)).toEqual(allowedAnswer);
  });

  it.each([
    ["a disallowed origin", "https://evil.example"],
    ["no Origin", undefined],
  ])("adds only Vary for %s", (_, origin) => {
    expect(actual(origin, "GET")).toEqual({ kind: "continue", headers: { vary: "Origin" } });
  });
});

describe("createCors with no origin allowed (the default)", () => {
  const closed = createCors({ ...lists, origins: [] });

  it("refuses every preflight and adds no header at all, not even Vary", () => {
    expect(closed.decide({ method: "OPTIONS", origin: app, accessControlRequestMethod: "POST" })).toEqual({
      kind: "preflight",
      status: 403,
      headers: {},
    });
    expect(closed.decide({ method: "POST", origin: app, accessControlRequestMethod: undefined })).toEqual({
      kind: "continue",
      headers: {},
    });
  });
});

describe("createCors options", () => {
  it.each([
    [{ origins: ["*"] }, 'createCors: origins: not an origin or pattern: "*"'],
    [
      { origins: ["https://app.example.com/"] },
      'createCors: origins: not an origin or pattern: "https://app.example.com/"',
    ],
    [{ allowedHeaders: ["*"] }, 'createCors: allowedHeaders must be header or method names (no "*")'],
    [
      { exposedHeaders: ["retry-after, x"] },
      'createCors: exposedHeaders must be header or method names (no "*")',
    ],
    [{ maxAgeSeconds: -1 }, "createCors: maxAgeSeconds must be a non-negative integer"],
  ])("rejects %j when built", (override, message) => {
    expect(() => createCors({ ...lists, origins: [app], ...override })).toThrow(message);
  });
});

describe("origin rules", () => {
  it.each<[string, OriginRule | undefined]>([
    ["https://app.example.com", { kind: "exact", origin: "https://app.example.com" }],
    ["http://localhost:5173", { kind: "exact", origin: "http://localhost:5173" }],
    ["https://*.example.com", { kind: "subdomains", scheme: "https:", domain: "example.com", port: "" }],
    [
      "http://*.example.com:8080",
      { kind: "subdomains", scheme: "http:", domain: "example.com", port: ":8080" },
    ],
    ["*", undefined],
    ["https://*", undefined],
    ["https://*.com", undefined],
    ["https://a.*.example.com", undefined],
    ["https://*.*.example.com", undefined],
    ["https://*.example.com/", undefined],
    ["https://*.example.com:443", undefined],
    ["https://*.Example.com", undefined],
    ["https://app.example.com:443", undefined],
    ["ftp://app.example.com", undefined],
    ["https://user@app.example.com", undefined],
  ])("parses %j", (text, rule) => {
    expect(parseOriginRule(text)).toEqual(rule);
  });

  it("matches a pattern's subdomains at any depth, with its scheme and port only", () => {
    const rule = parseOriginRule("https://*.example.com:8443");
    if (rule === undefined) throw new Error("pattern not parsed");
    const matches = createOriginMatcher([rule]);
    expect(["https://a.example.com:8443", "https://a.b-c.example.com:8443"].map(matches)).toEqual([
      true,
      true,
    ]);
    expect(
      [
        "https://example.com:8443",
        "https://a.example.com",
        "http://a.example.com:8443",
        "https://a.example.com:84430",
        "https://a_b.example.com:8443",
        "https://-a.example.com:8443",
        "https://a.example.com:8443.evil",
      ].map(matches),
    ).toEqual([false, false, false, false, false, false, false]);
  });
});
