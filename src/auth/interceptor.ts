import { toBinary, type DescMessage, type MessageShape } from "@bufbuild/protobuf";
import type { Interceptor, StreamRequest, UnaryRequest } from "@connectrpc/connect";
import { AppError, toConnectError } from "../errors/index.js";
import type { NonceStore } from "../lib/nonce-store.js";
import { httpRequestInfoKey } from "../lib/request-context.js";
import type { Logger } from "../log/index.js";
import type { Secrets } from "../secrets/types.js";
import { AuthFailure, type AuthFailureReason } from "./auth-failure.js";
import { hmacHeaders, sha256Hex } from "./hmac-signing.js";
import { createHmacVerifier, type RequestParts } from "./hmac-verifier.js";
import { createJwtVerifier } from "./jwt-verifier.js";
import { principalKey, type Principal } from "./principal.js";

/** The services reachable without credentials (SPEC S6): health (ours and gRPC's) and reflection. */
export const defaultPublicServices = [
  "apikeyserver.v1.HealthService",
  "grpc.health.v1.Health",
  "grpc.reflection.v1.ServerReflection",
  "grpc.reflection.v1alpha.ServerReflection",
] as const;

export interface AuthInterceptorOptions {
  /** The current secrets snapshot, read once per request. Undefined before the first load (→ 503). */
  readonly secrets: () => Secrets | undefined;
  readonly jwt: {
    /** Required `iss` when set. */
    readonly issuer?: string | undefined;
    /** Required `aud` when set. */
    readonly audience?: string | undefined;
    /** Leeway for exp/nbf/iat in seconds (suggested 30). */
    readonly clockToleranceSeconds: number;
    /** Oldest accepted token counted from `iat`, in seconds (so `iat` is required). */
    readonly maxTokenAgeSeconds: number;
  };
  readonly hmac: {
    /** Accepted timestamp distance in seconds (SPEC: 300). */
    readonly windowSeconds: number;
    readonly nonceStore: NonceStore;
  };
  /** Fully qualified service names that need no credentials; usually `defaultPublicServices`. */
  readonly publicServices: readonly string[];
  readonly logger: Logger;
  /**
   * Told about every authentication failure with the method tried and the logged reason (metrics);
   * default none. Must not throw.
   */
  readonly onFailure?: ((method: AuthMethodTried, reason: AuthFailureReason) => void) | undefined;
  /** Clock in ms since the epoch; Date.now by default. */
  readonly now?: () => number;
}

type AnyRequest = UnaryRequest | StreamRequest;

/** The credentials a failed request carried: a bearer token, HMAC headers, or none (or both) of them. */
export type AuthMethodTried = "jwt" | "hmac" | "none";

function methodTried(req: AnyRequest): AuthMethodTried {
  const bearer = req.header.has("authorization");
  const hmac = req.header.has(hmacHeaders.signature) || req.header.has(hmacHeaders.keyId);
  if (bearer === hmac) return "none";
  return bearer ? "jwt" : "hmac";
}

/**
 * The one authentication step for gRPC, Connect and REST (the REST transcoder calls through the same
 * chain). Requests to `publicServices` pass untouched. Every other call must carry exactly one of
 * `Authorization: Bearer <jwt>` or the HMAC headers; the caller is then set in `principalKey`. Any failure
 * is 401 / UNAUTHENTICATED `Unauthorized` with nothing more, and one WARNING log line with a stable
 * `reason` (never a token, secret or signature). No secrets loaded yet is 503 `Service not ready`.
 * `X-Serverless-Authorization` (Cloud Run IAM) is never read.
 */
export function createAuthInterceptor(options: AuthInterceptorOptions): Interceptor {
  const now = options.now ?? Date.now;
  const jwt = createJwtVerifier({
    issuer: options.jwt.issuer,
    audience: options.jwt.audience,
    clockToleranceSeconds: options.jwt.clockToleranceSeconds,
    maxTokenAgeSeconds: options.jwt.maxTokenAgeSeconds,
    now,
  });
  const hmac = createHmacVerifier({
    windowSeconds: options.hmac.windowSeconds,
    nonceStore: options.hmac.nonceStore,
    now,
  });
  const publicServices = new Set(options.publicServices);
  const { logger } = options;

  const authenticate = async (req: AnyRequest, secrets: Secrets): Promise<[Principal, AnyRequest]> => {
    const authorization = req.header.get("authorization");
    const hasHmac = req.header.has(hmacHeaders.signature) || req.header.has(hmacHeaders.keyId);
    if (authorization !== null && hasHmac) throw new AuthFailure("ambiguous_credentials");
    if (authorization !== null) {
      const match = /^Bearer +([^ ]+) *$/i.exec(authorization);
      if (match?.[1] === undefined) throw new AuthFailure("unsupported_scheme");
      return [await jwt.verify(match[1], secrets.jwtKeys), req];
    }
    if (hasHmac) {
      const [parts, forwarded] = await requestParts(req);
      return [await hmac.verify(req.header, parts, secrets.hmacKeys), forwarded];
    }
    throw new AuthFailure("missing_credentials");
  };

  return (next) => async (req) => {
    if (publicServices.has(req.service.typeName)) return next(req);
    const secrets = options.secrets();
    if (secrets === undefined) throw toConnectError(new AppError("not_ready"));
    let principal: Principal;
    let forwarded: AnyRequest;
    try {
      [principal, forwarded] = await authenticate(req, secrets);
    } catch (err) {
      const procedure = `/${req.service.typeName}/${req.method.name}`;
      if (err instanceof AuthFailure) {
        logger.warn({ auth: { reason: err.reason, ...err.detail }, procedure }, "Authentication failed");
        options.onFailure?.(methodTried(req), err.reason);
        throw toConnectError(new AppError("unauthenticated", { cause: err }));
      }
      // Not a verdict on the caller (e.g. the nonce store is down): a 500, logged as such.
      logger.error({ err, procedure }, "Authentication could not be completed");
      throw toConnectError(err);
    }
    req.contextValues.set(principalKey, principal);
    return next(forwarded);
  };
}

/**
 * What the HMAC signature covers. REST: the original request, from the transcoder. gRPC and Connect:
 * POST, `/<service>/<method>`, no query, and the protobuf binary of the (single) request message; for a
 * server-streaming call that message is read here and handed on in a fresh iterable.
 */
async function requestParts(req: AnyRequest): Promise<[RequestParts, AnyRequest]> {
  const info = req.contextValues.get(httpRequestInfoKey);
  if (info !== undefined) {
    return [{ method: info.method, path: info.path, query: info.query, bodySha256: info.bodySha256 }, req];
  }
  const base = { method: "POST", path: `/${req.service.typeName}/${req.method.name}`, query: "" };
  if (!req.stream) {
    return [{ ...base, bodySha256: sha256Hex(toBinary(req.method.input, req.message)) }, req];
  }
  if (req.method.methodKind !== "server_streaming") throw new AuthFailure("unsupported_stream");
  const iterator = req.message[Symbol.asyncIterator]();
  const first = await iterator.next();
  if (first.done === true) throw new AuthFailure("unsupported_stream");
  const message = first.value;
  const bodySha256 = sha256Hex(toBinary(req.method.input, message));
  return [
    { ...base, bodySha256 },
    { ...req, message: replay(message, iterator) },
  ];
}

async function* replay<T extends DescMessage>(
  first: MessageShape<T>,
  rest: AsyncIterator<MessageShape<T>>,
): AsyncGenerator<MessageShape<T>> {
  yield first;
  for (;;) {
    const next = await rest.next();
    if (next.done === true) return;
    yield next.value;
  }
}
