import type * as http from "node:http";
import type { EdgeEntry } from "./exchange.js";
import { createOriginMatcher, parseOriginRule, type OriginRule } from "../lib/origin.js";

export interface CorsOptions {
  /**
   * Allowed origins: exact (`https://app.example.com`) or every subdomain (`https://*.example.com`), see
   * `parseOriginRule`. Empty (the default of `API_KEY_SERVER_CORS_ORIGINS`): no origin is allowed, every
   * preflight is refused and no answer carries a CORS header.
   */
  readonly origins: readonly string[];
  /** `Access-Control-Allow-Methods` of a preflight answer. */
  readonly allowedMethods: readonly string[];
  /** `Access-Control-Allow-Headers` of a preflight answer (request headers a page may send). */
  readonly allowedHeaders: readonly string[];
  /** `Access-Control-Expose-Headers` of an actual answer (response headers a page may read). */
  readonly exposedHeaders: readonly string[];
  /**
   * `Access-Control-Max-Age` of a preflight answer, in seconds. Default 7200, the most Chromium caches
   * (Firefox allows a day); a browser then sends one preflight per origin, URL and header set per 2 h.
   */
  readonly maxAgeSeconds?: number;
}

/** What the edge does with a request, decided from its method and CORS request headers alone. */
export type CorsDecision =
  /** Not a preflight: run the request and add `headers` to whatever it answers. */
  | { readonly kind: "continue"; readonly headers: Readonly<Record<string, string>> }
  /**
   * A preflight: answer it now with `status` and `headers`; no route, interceptor or handler runs. 204 with
   * the allow headers for an allowed origin, 403 without any CORS header for any other.
   */
  | {
      readonly kind: "preflight";
      readonly status: 204 | 403;
      readonly headers: Readonly<Record<string, string>>;
    };

/** The request fields CORS looks at (header values as Node gives them). */
export interface CorsRequest {
  readonly method: string | undefined;
  readonly origin: string | string[] | undefined;
  readonly accessControlRequestMethod: string | string[] | undefined;
}

export interface Cors {
  decide(request: CorsRequest): CorsDecision;
}

const none: Readonly<Record<string, string>> = Object.freeze({});

/**
 * The CORS policy of the server (README, "Web clients"). Options are checked and every constant header
 * value is joined once, here; per request the work is a set lookup and one small object for an allowed
 * origin. `Vary: Origin` goes on every answer once any origin is allowed, since each answer then depends
 * on the `Origin` header (a shared cache must not hand one origin's answer to another).
 */
export function createCors(options: CorsOptions): Cors {
  const rules = options.origins.map((origin): OriginRule => {
    const rule = parseOriginRule(origin);
    if (rule === undefined)
      throw new Error(`createCors: origins: not an origin or pattern: ${JSON.stringify(origin)}`);
    return rule;
  });
  const maxAge = options.maxAgeSeconds ?? 7200;
  if (!Number.isSafeInteger(maxAge) || maxAge < 0) {
    throw new Error("createCors: maxAgeSeconds must be a non-negative integer");
  }
  for (const [name, list] of [
    ["allowedMethods", options.allowedMethods],
    ["allowedHeaders", options.allowedHeaders],
    ["exposedHeaders", options.exposedHeaders],
  ] as const) {
    // A token per RFC 9110 §5.6.2; anything else would corrupt the comma-separated header value.
    if (list.some((item) => !/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(item) || item === "*")) {
      throw new Error(`createCors: ${name} must be header or method names (no "*")`);
    }
  }

  const allowed = createOriginMatcher(rules);
  const enabled = rules.length > 0;
  const vary: Readonly<Record<string, string>> = enabled ? Object.freeze({ vary: "Origin" }) : none;
  const joined = (list: readonly string[]) => [...new Set(list.map((s) => s.toLowerCase()))].join(", ");
  const preflightHeaders = {
    vary: "Origin",
    "access-control-allow-methods": [...new Set(options.allowedMethods.map((m) => m.toUpperCase()))].join(
      ", ",
    ),
    "access-control-allow-headers": joined(options.allowedHeaders),
    "access-control-max-age": String(maxAge),
  } as const;
  const exposeHeaders = joined(options.exposedHeaders);
  const refused = { kind: "preflight", status: 403, headers: vary } as const satisfies CorsDecision;
  const passThrough = { kind: "continue", headers: vary } as const satisfies CorsDecision;

  return {
    decide({ method, origin, accessControlRequestMethod }) {
      // A header sent twice arrives as an array (or a joined string) and is no single origin: not allowed.
      const from = typeof origin === "string" && enabled && allowed(origin) ? origin : undefined;
      if (method === "OPTIONS" && origin !== undefined && accessControlRequestMethod !== undefined) {
        if (from === undefined) return refused;
        return {
          kind: "preflight",
          status: 204,
          headers: { ...preflightHeaders, "access-control-allow-origin": from },
        };
      }
      if (from === undefined) return passThrough;
      return {
        kind: "continue",
        headers: {
          vary: "Origin",
          "access-control-allow-origin": from,
          ...(exposeHeaders === "" ? {} : { "access-control-expose-headers": exposeHeaders }),
        },
      };
    },
  };
}

/**
 * The CORS entry of the edge (README, "Web clients"; docs/architecture.md): a preflight is answered here,
 * so no route, auth or handler runs for it (the access log, outside, still writes its line); any other
 * request gets its CORS headers set before the inner handlers write their own, which merge with them.
 */
export function createCorsEdge(options: CorsOptions): EdgeEntry {
  const cors = createCors(options);
  return (next) => (exchange) => {
    const { req, res } = exchange;
    const decision = cors.decide({
      method: exchange.method,
      origin: req.headers.origin,
      accessControlRequestMethod: req.headers["access-control-request-method"],
    });
    if (decision.kind === "preflight") {
      // The access line of a refused preflight names the origin refused (what an operator adds to
      // API_KEY_SERVER_CORS_ORIGINS, or the page that should not be calling); bounded, as any header.
      if (decision.status === 403) exchange.record.origin = String(req.headers.origin).slice(0, 256);
      // Both response kinds take this call; TypeScript cannot unify their overloads.
      // RFC 9110 §8.6: no Content-Length on a 204; the 403 says its empty body is complete.
      const headers =
        decision.status === 204 ? decision.headers : { ...decision.headers, "content-length": "0" };
      (res as http.ServerResponse).writeHead(decision.status, headers);
      res.end();
      return;
    }
    for (const [name, value] of Object.entries(decision.headers)) res.setHeader(name, value);
    next(exchange);
  };
}
