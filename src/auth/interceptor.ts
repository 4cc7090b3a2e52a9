import type { DescMessage, MessageShape } from "@bufbuild/protobuf";
import { ConnectError, type Interceptor, type StreamRequest, type UnaryRequest } from "@connectrpc/connect";
import { AppError, toConnectError } from "../errors/index.js";
import type { NonceStore } from "../lib/nonce-store.js";
import type { Logger } from "../log/index.js";
import type { Secrets } from "../secrets/types.js";
import { exchangeKey, type Exchange } from "../edge/exchange.js";
import { AuthFailure, type AuthFailureReason } from "./auth-failure.js";
import { repeatedCredentialHeader } from "./credential-headers.js";
import { hmacHeaders, sha256Hex } from "./hmac-signing.js";
import { createHmacVerifier } from "./hmac-verifier.js";
import { createJwtVerifier } from "./jwt-verifier.js";
import { principalKey, type Principal } from "./principal.js";

/** The services reachable without credentials (docs/auth.md): health (ours and gRPC's) and reflection. */
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
    /** Accepted timestamp distance in seconds (default 300). */
    readonly windowSeconds: number;
    readonly nonceStore: NonceStore;
    /** Refuse signed requests without a nonce (default true; false is weaker, see docs/auth.md). */
    readonly requireNonce?: boolean;
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

/** Enough of a request's headers to tell which credential it tried. */
interface HeaderPresence {
  has(name: string): boolean;
}

function methodTried(header: HeaderPresence): AuthMethodTried {
  const bearer = header.has("authorization");
  const hmac = header.has(hmacHeaders.signature) || header.has(hmacHeaders.keyId);
  if (bearer === hmac) return "none";
  return bearer ? "jwt" : "hmac";
}

/**
 * The one authentication step for gRPC, Connect and REST (the REST transcoder calls through the same
 * chain). Requests to `publicServices` pass untouched. Every other call must carry exactly one of
 * `Authorization: Bearer <jwt>` or the HMAC headers; the caller is then set in `principalKey`. Both at
 * once, or a credential header sent twice (seen in the exchange's raw headers), is 400 / INVALID_ARGUMENT
 * naming the ambiguity: which credential would win is a guess the server must not make. Any other failure
 * is 401 / UNAUTHENTICATED `Unauthorized` with nothing more. Both log one WARNING line with a stable
 * `reason` (never a token, secret or signature). No secrets loaded yet is 503 `Service not ready`.
 * `X-Serverless-Authorization` (Cloud Run IAM) is never read.
 */
export function createAuthInterceptor(options: AuthInterceptorOptions): Interceptor {
  return createAuth(options).interceptor;
}

/** The request headers authentication reads (a fetch `Headers` fits). */
export interface CredentialHeaders {
  get(name: string): string | null;
  has(name: string): boolean;
}

/**
 * One request as a dispatch path hands it to `Auth.precheck`: read (size-limited), not yet decoded.
 */
export interface PrecheckRequest {
  /** Fully qualified service name and method name of the call. */
  readonly service: string;
  readonly method: string;
  readonly headers: CredentialHeaders;
  /** The raw request headers (Node's `rawHeaders`), to find a credential header sent twice. */
  readonly rawHeaders: readonly string[];
  /** The request's exchange: a caller proven here is remembered for it, for the interceptor. */
  readonly exchange: Exchange;
  /**
   * What an HMAC signature covers besides the body (docs/auth.md, "string to sign"): REST and the
   * OpenAI-compatible surface the HTTP method, path and raw query as sent; gRPC and Connect `POST`,
   * `/<service>/<method>` and "".
   */
  readonly signed: { readonly method: string; readonly path: string; readonly query: string };
  /**
   * The signed body bytes, asked for only by an HMAC request whose headers passed: REST the raw HTTP
   * body; gRPC and Connect the one request message as encoded on the wire, uncompressed (docs/auth.md).
   * Undefined when the body is not exactly one message (the protocol refuses it before any call).
   */
  readonly body: () => Uint8Array | undefined | Promise<Uint8Array | undefined>;
}

export interface Auth {
  /** The interceptor of {@link createAuthInterceptor}. */
  readonly interceptor: Interceptor;
  /**
   * Authentication on the raw request (no unauthenticated request may cost a JSON or protobuf
   * decode), run by every dispatch path after the size-limited read and before any decode: the credential
   * headers present and unambiguous, a JWT verified (the interceptor's own check then hits the verifier's
   * cache), or the HMAC headers well-formed, in the window and of a known key, then the signature over the
   * raw body bytes and only then the nonce (consumed here, once per request). A verified HMAC caller is
   * remembered for the exchange; the interceptor takes it from there and verifies nothing again. Throws
   * the AppError the interceptor would turn into the answer (401, or 400 for ambiguous credentials), after
   * the same log line; resolves when the call may go on to be decoded. Public services and a server
   * without secrets yet pass (the interceptor answers those).
   */
  readonly precheck: (request: PrecheckRequest) => Promise<void>;
}

type Credentials = { readonly kind: "jwt"; readonly token: string } | { readonly kind: "hmac" };

/** The auth interceptor and its body-free precheck, sharing one JWT verifier (and its cache). */
export function createAuth(options: AuthInterceptorOptions): Auth {
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
    ...(options.hmac.requireNonce === undefined ? {} : { requireNonce: options.hmac.requireNonce }),
    now,
  });
  const publicServices = new Set(options.publicServices);
  const { logger } = options;
  // HMAC callers proven by the precheck, by exchange (a trusted in-process value, nothing a caller sends).
  const verified = new WeakMap<Exchange, Principal>();

  /** Which credentials the request carries; throws AuthFailure for none, both, repeated or unsupported. */
  const credentialsOf = (
    headers: CredentialHeaders,
    rawHeaders: readonly string[] | undefined,
  ): Credentials => {
    const repeated = rawHeaders && repeatedCredentialHeader(rawHeaders);
    if (repeated !== undefined) throw new AuthFailure("ambiguous_credentials", { header: repeated });
    const authorization = headers.get("authorization");
    const hasHmac = headers.has(hmacHeaders.signature) || headers.has(hmacHeaders.keyId);
    if (authorization !== null && hasHmac) {
      throw new AuthFailure("ambiguous_credentials", { header: "authorization+hmac" });
    }
    if (authorization !== null) {
      const match = /^Bearer +([^ ]+) *$/i.exec(authorization);
      if (match?.[1] === undefined) throw new AuthFailure("unsupported_scheme");
      return { kind: "jwt", token: match[1] };
    }
    if (hasHmac) return { kind: "hmac" };
    throw new AuthFailure("missing_credentials");
  };

  /**
   * Logs a failed authentication once and returns what to throw (an AppError for a verdict on the caller).
   * The line carries the request id, so it joins the request's access line.
   */
  const refusal = (
    err: unknown,
    procedure: string,
    headers: HeaderPresence,
    requestId: string | undefined,
  ): unknown => {
    if (err instanceof AuthFailure) {
      logger.warn(
        { requestId, auth: { reason: err.reason, ...err.detail }, procedure },
        "Authentication failed",
      );
      options.onFailure?.(methodTried(headers), err.reason);
      if (err.reason === "ambiguous_credentials") {
        return new AppError("invalid_argument", { message: ambiguity(err), cause: err });
      }
      return new AppError("unauthenticated", { cause: err });
    }
    // Not a verdict on the caller (e.g. the nonce store is down): a 500, logged as such.
    logger.error({ requestId, err, procedure }, "Authentication could not be completed");
    return err;
  };

  const authenticate = async (req: AnyRequest, secrets: Secrets): Promise<[Principal, AnyRequest]> => {
    // The exchange (set by every dispatch path) carries the raw request; in-process callers have none.
    const exchange = req.contextValues.get(exchangeKey);
    const credentials = credentialsOf(req.header, exchange?.req.rawHeaders);
    if (credentials.kind === "jwt") return [await jwt.verify(credentials.token, secrets.jwtKeys), req];
    // HMAC is verified over the raw body by the precheck, before anything is decoded. A server stream's
    // interceptor runs before its body is read: the first message is awaited (which runs the precheck
    // first, then the decode) and handed on in a fresh iterable.
    let forwarded: AnyRequest = req;
    if (req.stream) {
      if (req.method.methodKind !== "server_streaming") throw new AuthFailure("unsupported_stream");
      const iterator = req.message[Symbol.asyncIterator]();
      const first = await iterator.next();
      if (first.done === true) throw new AuthFailure("unsupported_stream");
      forwarded = { ...req, message: replay(first.value, iterator) };
    }
    const principal = exchange === undefined ? undefined : verified.get(exchange);
    // Every dispatch path runs the precheck; a call without it was wired wrongly: refused, logged as ERROR.
    if (principal === undefined) throw new Error("HMAC call whose raw body no dispatch path checked");
    return [principal, forwarded];
  };
  const interceptor: Interceptor = (next) => async (req) => {
    if (publicServices.has(req.service.typeName)) return next(req);
    const secrets = options.secrets();
    if (secrets === undefined) throw toConnectError(new AppError("not_ready"));
    let principal: Principal;
    let forwarded: AnyRequest;
    try {
      [principal, forwarded] = await authenticate(req, secrets);
    } catch (err) {
      // Already a wire error: the stream's body failed (its precheck refused it, logged and counted there).
      if (err instanceof ConnectError) throw err;
      const requestId = req.contextValues.get(exchangeKey)?.requestId;
      throw toConnectError(
        refusal(err, `/${req.service.typeName}/${req.method.name}`, req.header, requestId),
      );
    }
    req.contextValues.set(principalKey, principal);
    return next(forwarded);
  };

  return {
    interceptor,
    async precheck(request) {
      const { service, method, headers } = request;
      if (publicServices.has(service)) return;
      const secrets = options.secrets();
      if (secrets === undefined) return;
      const procedure = `/${service}/${method}`;
      try {
        const credentials = credentialsOf(headers, request.rawHeaders);
        if (credentials.kind === "jwt") {
          await jwt.verify(credentials.token, secrets.jwtKeys);
          return;
        }
        // Headers, window and key id first: a request failing them costs no hash (nor decompression).
        hmac.precheck(headers, secrets.hmacKeys);
      } catch (err) {
        throw refusal(err, procedure, headers, request.exchange.requestId);
      }
      // Outside the refusal: a body that cannot be decompressed is the protocol's error, not auth's.
      const body = await request.body();
      // Not one message: the protocol refuses it before any call (and the interceptor would refuse it).
      if (body === undefined) return;
      try {
        const signed = { ...request.signed, bodySha256: sha256Hex(body) };
        verified.set(request.exchange, await hmac.verify(headers, signed, secrets.hmacKeys));
      } catch (err) {
        throw refusal(err, procedure, headers, request.exchange.requestId);
      }
    },
  };
}

/** The 400 message for an ambiguous_credentials failure: which ambiguity, never a value. */
function ambiguity(err: AuthFailure): string {
  const header = err.detail["header"];
  return header === "authorization+hmac"
    ? "Ambiguous credentials (both an Authorization header and HMAC headers are sent)"
    : `Ambiguous credentials (the ${header ?? "credential"} header is sent more than once)`;
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
