import type { ConnectError } from "@connectrpc/connect";
import { Code, type Interceptor, type StreamRequest, type UnaryRequest } from "@connectrpc/connect";
import { httpStatusOfError, toConnectError } from "../errors/index.js";
import type { Logger } from "../log/index.js";
import { httpRequestInfoKey } from "../lib/request-context.js";
import { accessRecordKey, type AccessRecord } from "./access-record.js";

export interface AccessLogOptions {
  readonly logger: Logger;
  /** GCP project for `logging.googleapis.com/trace` ("projects/P/traces/T"); trace fields are left out without it. */
  readonly gcpProjectId: string | undefined;
  /**
   * Services whose successful calls are logged at DEBUG rather than INFO (health probes and reflection
   * would otherwise drown the access log). Failures are always logged at WARNING or ERROR.
   */
  readonly quietServices?: readonly string[];
}

/**
 * The outermost interceptor: turns anything a handler throws into its wire error (the only place that
 * does, through toConnectError) and writes one access line per call with product, model, caller, status,
 * latency, upstream latency and token usage (SPEC S10). Causes are logged; they never reach the caller.
 */
export function createAccessLogInterceptor(options: AccessLogOptions): Interceptor {
  const { logger, gcpProjectId } = options;
  const quiet: ReadonlySet<string> = new Set(options.quietServices ?? []);

  function write(
    req: UnaryRequest | StreamRequest,
    record: AccessRecord,
    started: number,
    err: ConnectError | undefined,
  ): void {
    const latency = (performance.now() - started) / 1000;
    const status = err ? httpStatusOfError(err) : 200;
    // A REST call reaches the handler as an in-process Connect call: log the caller's own method and path.
    const http = req.contextValues.get(httpRequestInfoKey);
    const line: Record<string, unknown> = {
      httpRequest: {
        requestMethod: http?.method ?? req.requestMethod,
        requestUrl: http ? http.path + (http.query ? `?${http.query}` : "") : pathnameOf(req.url),
        status,
        latency: `${latency.toFixed(6)}s`,
        userAgent: req.header.get("user-agent") ?? undefined,
      },
      rpc: `${req.service.typeName}/${req.method.name}`,
      code: err ? Code[err.code] : "OK",
      ...record,
    };
    if (gcpProjectId !== undefined) Object.assign(line, traceFields(req.header, gcpProjectId));
    if (err) {
      line["error"] = err.rawMessage;
      if (err.cause !== undefined) line["cause"] = describeCause(err.cause);
    }
    const message = `${req.service.typeName}/${req.method.name} ${status}`;
    if (status >= 500) logger.error(line, message);
    else if (status >= 400) logger.warn(line, message);
    else if (quiet.has(req.service.typeName)) logger.debug(line, message);
    else logger.info(line, message);
  }

  return (next) => async (req) => {
    const record: AccessRecord = {};
    req.contextValues.set(accessRecordKey, record);
    const started = performance.now();
    let res;
    try {
      res = await next(req);
    } catch (thrown) {
      const err = toConnectError(thrown);
      write(req, record, started, err);
      throw err;
    }
    if (!res.stream) {
      write(req, record, started, undefined);
      return res;
    }
    const messages = res.message;
    return {
      ...res,
      message: (async function* () {
        try {
          yield* messages;
        } catch (thrown) {
          const err = toConnectError(thrown);
          write(req, record, started, err);
          throw err;
        }
        write(req, record, started, undefined);
      })(),
    };
  };
}

/**
 * The path of an absolute request URL ("http://host/pkg.Service/Method?x" → "/pkg.Service/Method"), without
 * a URL parser: the router only reaches a handler for a URL whose path is a method's exact path.
 */
function pathnameOf(url: string): string {
  const scheme = url.indexOf("://");
  const start = url.indexOf("/", scheme < 0 ? 0 : scheme + 3);
  if (start < 0) return "/";
  let end = url.indexOf("?", start);
  const hash = url.indexOf("#", start);
  if (end < 0 || (hash >= 0 && hash < end)) end = hash;
  return end < 0 ? url.slice(start) : url.slice(start, end);
}

function describeCause(cause: unknown): string {
  if (cause instanceof Error) {
    const inner = cause.cause instanceof Error ? `: ${cause.cause.message}` : "";
    return `${cause.name}: ${cause.message}${inner}`;
  }
  return String(cause);
}

/** Cloud Logging trace correlation from X-Cloud-Trace-Context ("T/S;o=1") or W3C traceparent ("00-T-S-01"). */
function traceFields(header: Headers, projectId: string): Record<string, unknown> {
  let trace: string | undefined;
  let span: string | undefined;
  let sampled: boolean | undefined;
  const cloud = header.get("x-cloud-trace-context");
  const w3c = header.get("traceparent");
  if (cloud) {
    const m = /^([0-9a-fA-F]{32})(?:\/(\d+))?(?:;o=([01]))?/.exec(cloud);
    if (m) {
      trace = m[1];
      span = m[2];
      sampled = m[3] === undefined ? undefined : m[3] === "1";
    }
  } else if (w3c) {
    const m = /^[0-9a-f]{2}-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/.exec(w3c);
    if (m) {
      trace = m[1];
      span = m[2];
      sampled = m[3] === "01";
    }
  }
  if (trace === undefined) return {};
  const fields: Record<string, unknown> = {
    "logging.googleapis.com/trace": `projects/${projectId}/traces/${trace}`,
  };
  if (span !== undefined) fields["logging.googleapis.com/spanId"] = span;
  if (sampled !== undefined) fields["logging.googleapis.com/trace_sampled"] = sampled;
  return fields;
}
