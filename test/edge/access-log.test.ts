import * as http from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { composeEdge, createAccessLogEdge } from "../../src/edge/index.js";
import { traceFields } from "../../src/edge/trace.js";
import { captureLog } from "../support/log-capture.js";

// Issue 11 item 5: trace correlation from X-Cloud-Trace-Context and traceparent.

const trace = "4bf92f3577b34da6a3ce929d0e0e4736";

const cases: {
  name: string;
  headers: Record<string, string>;
  withProject: Record<string, unknown> | undefined;
  local: Record<string, unknown> | undefined;
}[] = [
  {
    name: "X-Cloud-Trace-Context with span and sampling",
    headers: { "x-cloud-trace-context": `${trace}/1;o=1` },
    withProject: {
      "logging.googleapis.com/trace": `projects/proj-1/traces/${trace}`,
      "logging.googleapis.com/spanId": "0000000000000001",
      "logging.googleapis.com/trace_sampled": true,
    },
    local: {
      traceId: trace,
      "logging.googleapis.com/spanId": "0000000000000001",
      "logging.googleapis.com/trace_sampled": true,
    },
  },
  {
    name: "X-Cloud-Trace-Context, decimal span id as Cloud Trace's 16 hex digits, not sampled",
    headers: { "x-cloud-trace-context": `${trace.toUpperCase()}/12345678901234567890;o=0` },
    withProject: {
      "logging.googleapis.com/trace": `projects/proj-1/traces/${trace}`,
      "logging.googleapis.com/spanId": "ab54a98ceb1f0ad2",
      "logging.googleapis.com/trace_sampled": false,
    },
    local: {
      traceId: trace,
      "logging.googleapis.com/spanId": "ab54a98ceb1f0ad2",
      "logging.googleapis.com/trace_sampled": false,
    },
  },
  {
    name: "X-Cloud-Trace-Context with the trace id only",
    headers: { "x-cloud-trace-context": trace },
    withProject: { "logging.googleapis.com/trace": `projects/proj-1/traces/${trace}` },
    local: { traceId: trace },
  },
  {
    name: "W3C traceparent",
    headers: { traceparent: `00-${trace}-00f067aa0ba902b7-01` },
    withProject: {
      "logging.googleapis.com/trace": `projects/proj-1/traces/${trace}`,
      "logging.googleapis.com/spanId": "00f067aa0ba902b7",
      "logging.googleapis.com/trace_sampled": true,
    },
    local: {
      traceId: trace,
      "logging.googleapis.com/spanId": "00f067aa0ba902b7",
      "logging.googleapis.com/trace_sampled": true,
    },
  },
  {
    name: "both: Cloud Run's header wins",
    headers: {
      "x-cloud-trace-context": `${trace}/7`,
      traceparent: `00-${"1".repeat(32)}-00f067aa0ba902b7-01`,
    },
    withProject: {
      "logging.googleapis.com/trace": `projects/proj-1/traces/${trace}`,
      "logging.googleapis.com/spanId": "0000000000000007",
    },
    local: { traceId: trace, "logging.googleapis.com/spanId": "0000000000000007" },
  },
  {
    name: "a malformed traceparent",
    headers: { traceparent: "00-xyz-01" },
    withProject: undefined,
    local: undefined,
  },
  { name: "no trace header", headers: {}, withProject: undefined, local: undefined },
];

describe("traceFields", () => {
  it.each(cases)("$name", ({ headers, withProject, local }) => {
    expect(traceFields(headers, "proj-1")).toStrictEqual(withProject);
    expect(traceFields(headers, undefined)).toStrictEqual(local);
  });
});

describe("the access line carries the trace fields", () => {
  const log = captureLog();
  const servers: http.Server[] = [];
  const urls: Record<"project" | "local", string> = { project: "", local: "" };
  beforeAll(async () => {
    for (const [key, gcpProjectId] of [
      ["project", "proj-1"],
      ["local", undefined],
    ] as const) {
      const listener = composeEdge({
        entries: [createAccessLogEdge({ logger: log.logger, gcpProjectId })],
        dispatch: (exchange) => {
          exchange.res.writeHead(204);
          exchange.res.end();
        },
      });
      const server = http.createServer(listener);
      await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
      servers.push(server);
      urls[key] = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    }
  });
  afterAll(async () => {
    for (const server of servers) await new Promise((r) => server.close(r));
  });

  it.each(["project", "local"] as const)("%s", async (key) => {
    const from = log.lines.length;
    const res = await fetch(`${urls[key]}/x`, {
      headers: { traceparent: `00-${trace}-00f067aa0ba902b7-01` },
    });
    expect(res.status).toBe(204);
    for (let i = 0; i < 100 && log.lines.length === from; i++) await new Promise((r) => setTimeout(r, 10));
    const [line, ...more] = log.records().slice(from);
    expect(more).toEqual([]);
    expect(line).toMatchObject({
      message: "GET /x 204",
      ...(key === "project"
        ? { "logging.googleapis.com/trace": `projects/proj-1/traces/${trace}` }
        : { traceId: trace }),
      "logging.googleapis.com/spanId": "00f067aa0ba902b7",
    });
  });
});
