import type { IncomingHttpHeaders } from "node:http";

const cloudTraceRe = /^([0-9a-fA-F]{32})(?:\/(\d+))?(?:;o=([01]))?/;
const traceparentRe = /^[0-9a-f]{2}-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;

/**
 * Trace correlation fields of an access line, from `X-Cloud-Trace-Context` ("T/S;o=1", what Cloud Run's
 * front end sets) or else W3C `traceparent` ("00-T-S-01"). With a GCP project id: Cloud Logging's
 * `logging.googleapis.com/trace` ("projects/P/traces/T"), `.../spanId` and `.../trace_sampled`, which
 * group the line under its trace. Without one (local files) the trace id goes to `traceId`, so it can still
 * be followed (docs/architecture.md, "Access lines"). Nothing for a missing or malformed header.
 */
export function traceFields(
  headers: IncomingHttpHeaders,
  projectId: string | undefined,
): Record<string, unknown> | undefined {
  let trace: string | undefined;
  let span: string | undefined;
  let sampled: boolean | undefined;
  const cloud = headers["x-cloud-trace-context"];
  const w3c = headers["traceparent"];
  if (typeof cloud === "string") {
    const m = cloudTraceRe.exec(cloud);
    if (m) {
      trace = m[1]?.toLowerCase();
      // The header's span id is decimal; Cloud Logging wants the 16 hex digits Cloud Trace uses.
      span = m[2] === undefined ? undefined : BigInt(m[2]).toString(16).padStart(16, "0").slice(-16);
      sampled = m[3] === undefined ? undefined : m[3] === "1";
    }
  } else if (typeof w3c === "string") {
    const m = traceparentRe.exec(w3c);
    if (m) {
      trace = m[1];
      span = m[2];
      sampled = m[3] === "01";
    }
  }
  if (trace === undefined) return undefined;
  const fields: Record<string, unknown> =
    projectId === undefined
      ? { traceId: trace }
      : { "logging.googleapis.com/trace": `projects/${projectId}/traces/${trace}` };
  if (span !== undefined) fields["logging.googleapis.com/spanId"] = span;
  if (sampled !== undefined) fields["logging.googleapis.com/trace_sampled"] = sampled;
  return fields;
}
