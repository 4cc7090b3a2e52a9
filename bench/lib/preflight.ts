// Pre-flight: one real call per target and scenario, checked for the right answer, because the load tools
// count only transport errors and HTTP statuses (a gRPC failure is HTTP 200 with grpc-status in trailers).
import { Buffer } from "node:buffer";
import { once } from "node:events";
import http2 from "node:http2";
import { setTimeout as sleep } from "node:timers/promises";
import type { BenchRequest } from "./requests.ts";
import { EXPECTED_ANSWER } from "./requests.ts";
import type { Scenario } from "./scenarios.ts";
import { SSE_CHUNKS } from "./scenarios.ts";
import { SseParser, newOutcome, recordEvent, summariseStreams } from "./sse-load.ts";

/** A whole SSE answer (status 200) read as the driver reads a stream, without the timing. */
function summariseText(text: string): { stats: ReturnType<typeof summariseStreams> } {
  const outcome = newOutcome();
  outcome.status = 200;
  for (const event of new SseParser().push(text)) recordEvent(outcome, event);
  return { stats: summariseStreams([outcome], SSE_CHUNKS, 0) };
}

export type Check = { ok: true; responseBytes?: number } | { ok: false; why: string };

/** One checked call; never rejects (a failure is `{ ok: false, why }`). */
export async function preflight(port: number, scenario: Scenario, request: BenchRequest): Promise<Check> {
  try {
    return scenario.api === "grpc" ? await grpcCall(port, request) : await httpCall(port, scenario, request);
  } catch (error) {
    return { ok: false, why: String(error) };
  }
}

async function httpCall(port: number, scenario: Scenario, request: BenchRequest): Promise<Check> {
  const res = await fetch(`http://127.0.0.1:${port}${request.path}`, {
    method: "POST",
    headers: { "content-type": "application/json", ...request.headers },
    body: request.body,
    signal: AbortSignal.timeout(10_000),
  });
  const text = await res.text();
  if (res.status !== 200) return { ok: false, why: `HTTP ${res.status}: ${text.slice(0, 200)}` };
  if (scenario.api === "sse") {
    // The whole stream, as the driver reads it: every content chunk, then [DONE].
    const { stats } = summariseText(text);
    return stats.completed === 1
      ? { ok: true }
      : { ok: false, why: `not ${SSE_CHUNKS} content chunks and [DONE]: ${text.slice(0, 200)}` };
  }
  if (scenario.api === "rest-stream") {
    const type = res.headers.get("content-type") ?? "";
    const ok = type.startsWith("text/event-stream") && text.includes("help");
    return ok ? { ok: true } : { ok: false, why: `not an event stream with the answer (${type})` };
  }
  let content: unknown;
  try {
    content = (JSON.parse(text) as { choices?: { message?: { content?: unknown } }[] }).choices?.[0]?.message
      ?.content;
  } catch {
    return { ok: false, why: `not JSON: ${text.slice(0, 200)}` };
  }
  // Only the mock answers this: the call went through the target to the mock and back.
  return content === EXPECTED_ANSWER
    ? { ok: true }
    : { ok: false, why: `unexpected answer: ${text.slice(0, 200)}` };
}

async function grpcCall(port: number, request: BenchRequest): Promise<Check> {
  const session = http2.connect(`http://127.0.0.1:${port}`);
  try {
    session.on("error", () => {});
    const stream = session.request({ ":method": "POST", ":path": request.path, ...request.headers });
    stream.end(request.body);
    const chunks: Buffer[] = [];
    let status = "";
    let trailers: http2.IncomingHttpHeaders = {};
    stream.on("response", (headers) => {
      status = String(headers[":status"]);
      trailers = headers;
    });
    stream.on("trailers", (t: http2.IncomingHttpHeaders) => {
      trailers = { ...trailers, ...t };
    });
    stream.on("data", (c: Buffer) => chunks.push(c));
    await Promise.race([
      once(stream, "end"),
      sleep(10_000).then(() => Promise.reject(new Error("gRPC call timed out"))),
    ]);
    const body = Buffer.concat(chunks);
    const grpcStatus = String(trailers["grpc-status"] ?? "");
    if (status !== "200" || grpcStatus !== "0") {
      return {
        ok: false,
        why: `HTTP ${status}, grpc-status ${grpcStatus || "(none)"}: ${String(trailers["grpc-message"] ?? "")}`,
      };
    }
    if (!body.includes(EXPECTED_ANSWER))
      return { ok: false, why: "gRPC answer does not carry the expected content" };
    return { ok: true, responseBytes: body.length };
  } finally {
    session.close();
  }
}
