import { AppError } from "../errors/index.js";
import type { Logger } from "../log/index.js";
import { clientAddressOf } from "./client-address.js";
import type { EdgeEntry, Exchange, Outcome } from "./exchange.js";
import { traceFields } from "./trace.js";

export interface AccessLogEdgeOptions {
  readonly logger: Logger;
  /** GCP project for `logging.googleapis.com/trace`; without it the trace id is logged as `traceId`. */
  readonly gcpProjectId: string | undefined;
  /**
   * Services whose successful calls are logged at DEBUG rather than INFO (health probes and reflection
   * would otherwise drown the access log). Failures are always logged at WARNING or ERROR.
   */
  readonly quietServices?: readonly string[];
  /**
   * Proxies in front of the server that append to `X-Forwarded-For` (API_KEY_SERVER_TRUST_PROXY); 0 (the
   * default) takes the socket's address as the client's (src/edge/client-address.ts).
   */
  readonly trustedProxies?: number;
}

/**
 * The access log: exactly one line per request on the port, whatever answered it (an RPC, the REST
 * transcoder, the router's 404/415, an edge entry), written when the response is over. It names method,
 * path, protocol, status, latency and, when the call learnt them, RPC, product, model, caller, upstream
 * latency and token usage (docs/architecture.md, "Access lines"). Severity: ERROR for 5xx, WARNING for
 * 4xx and for calls the server cut at the end of the shutdown grace, INFO for the rest (499 included:
 * a client that cancels is no fault), DEBUG for successful calls to `quietServices`.
 */
export function createAccessLogEdge(options: AccessLogEdgeOptions): EdgeEntry {
  const { logger, gcpProjectId } = options;
  const quiet: ReadonlySet<string> = new Set(options.quietServices ?? []);
  const trustedProxies = options.trustedProxies ?? 0;
  if (!Number.isSafeInteger(trustedProxies) || trustedProxies < 0) {
    throw new TypeError("createAccessLogEdge: trustedProxies must be a non-negative integer");
  }

  function write(outcome: Outcome, exchange: Exchange): void {
    const { req, record, error } = exchange;
    const { status } = outcome;
    const line: Record<string, unknown> = {
      httpRequest: {
        requestMethod: exchange.method,
        requestUrl: exchange.query === "" ? exchange.path : `${exchange.path}?${exchange.query}`,
        status,
        latency: `${outcome.latencySeconds.toFixed(6)}s`,
        userAgent: req.headers["user-agent"],
        remoteIp: clientAddressOf(exchange.peerAddress, req.headers, trustedProxies),
        protocol: exchange.httpVersion === "2" ? "HTTP/2" : "HTTP/1.1",
      },
      protocol: exchange.protocol,
      rpc: exchange.rpc,
      code: outcome.code,
      ...record,
    };
    if (outcome.cut !== undefined) line["cut"] = outcome.cut;
    const trace = traceFields(req.headers, gcpProjectId);
    if (trace !== undefined) Object.assign(line, trace);
    // A client that went away makes whatever the call failed with afterwards beside the point.
    if (error !== undefined && outcome.cut !== "client") {
      line["error"] = error.rawMessage;
      if (error.cause !== undefined) line["cause"] = describeCause(error.cause);
      if (status === 429) Object.assign(line, refusalFields(error.cause, error.metadata));
    }
    const message = `${exchange.rpc ?? `${exchange.method} ${exchange.path}`} ${status}`;
    if (outcome.cut === "server") logger.warn(line, message);
    else if (status >= 500) logger.error(line, message);
    else if (status >= 400 && status !== 499) logger.warn(line, message);
    else if (status < 400 && isQuiet(exchange.rpc, quiet)) logger.debug(line, message);
    else logger.info(line, message);
  }

  return (next) => (exchange) => {
    exchange.onEnd(write);
    next(exchange);
  };
}

/**
 * What a 429 line adds: which limit tripped (`limit`: `requests_per_minute`, `tokens_per_minute`,
 * `concurrent_calls`, `provider`; `limitMax` for ours) and the delay the caller was given: `retryAfterMs`
 * (google.rpc.RetryInfo) and `retryAfterSeconds`, the `Retry-After` value sent (REST, or the metadata of
 * gRPC and Connect), rounded up from the delay where the error carried no header.
 */
function refusalFields(cause: unknown, metadata: Headers): Record<string, unknown> {
  if (!(cause instanceof AppError)) return {};
  const fields: Record<string, unknown> = { ...cause.logFields };
  if (cause.retryAfterMs !== undefined) {
    const ms = Math.max(0, Math.ceil(cause.retryAfterMs));
    const header = metadata.get("retry-after");
    fields["retryAfterMs"] = ms;
    fields["retryAfterSeconds"] = header === null ? Math.ceil(ms / 1000) : Number(header);
  }
  return fields;
}

function isQuiet(rpc: string | undefined, quiet: ReadonlySet<string>): boolean {
  if (rpc === undefined) return false;
  const slash = rpc.lastIndexOf("/");
  return quiet.has(slash < 0 ? rpc : rpc.slice(0, slash));
}

function describeCause(cause: unknown): string {
  if (cause instanceof Error) {
    const inner = cause.cause instanceof Error ? `: ${cause.cause.message}` : "";
    return `${cause.name}: ${cause.message}${inner}`;
  }
  return String(cause);
}
