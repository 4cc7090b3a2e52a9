import { createServer, request, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { composeEdge, type Exchange } from "../../src/edge/index.js";
import { createMetrics, createMetricsEdge } from "../../src/metrics/index.js";
import { series, value } from "../support/metrics-scrape.js";

const unaryRpc = "test.v1.Svc/Unary";
const streamRpc = "test.v1.Svc/Stream";

/** A request the dispatcher holds open until the test ends it; `ended` resolves after the edge recorded it. */
interface Held {
  readonly exchange: Exchange;
  readonly ended: Promise<void>;
}

const metrics = createMetrics({
  version: "t",
  products: () => undefined,
  limiterSource: "memory",
  processMetrics: false,
});
const held: Held[] = [];
let server: Server;
let port: number;

beforeAll(async () => {
  const listener = composeEdge({
    entries: [createMetricsEdge({ metrics, streamingRpcs: [streamRpc] })],
    dispatch(exchange) {
      exchange.rpc = exchange.path === "/stream" ? streamRpc : unaryRpc;
      // Registered after the metrics entry's listener, so it runs after the request was recorded.
      const ended = new Promise<void>((resolve) => exchange.onEnd(() => resolve()));
      held.push({ exchange, ended });
    },
  });
  server = createServer(listener);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  port = (server.address() as AddressInfo).port;
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
});

function send(path: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request({ host: "127.0.0.1", port, path, method: "POST", agent: false }, (res) => {
      res.resume();
      res.on("end", () => resolve(res.statusCode ?? 0));
    });
    req.on("error", reject);
    req.end();
  });
}

async function inFlight(): Promise<[number | undefined, number | undefined]> {
  const text = await metrics.registry.metrics();
  return [value(text, "api_key_server_in_flight_requests"), value(text, "api_key_server_open_streams")];
}

describe("the metrics edge entry's live requests", () => {
  it("counts open unary calls and streams, whatever order they end in", async () => {
    const paths = ["/unary", "/stream", "/unary", "/stream", "/unary", "/unary"];
    const answers = paths.map((path) => send(path));
    for (let i = 0; i < 500 && held.length < paths.length; i++) {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    expect(held).toHaveLength(paths.length);
    expect(await inFlight()).toEqual([4, 2]);

    // Ended out of arrival order: first, last, middle ones; the gauges drop by exactly the one that ended.
    let unary = 4;
    let streams = 2;
    for (const index of [0, 5, 3, 2, 1, 4]) {
      const call = held[index];
      if (call === undefined) throw new Error(`no held call ${index}`);
      call.exchange.res.end("ok");
      await call.ended;
      if (call.exchange.rpc === streamRpc) streams -= 1;
      else unary -= 1;
      expect(await inFlight()).toEqual([unary, streams]);
    }
    expect(await Promise.all(answers)).toEqual(paths.map(() => 200));
    const text = await metrics.registry.metrics();
    expect(series(text, "api_key_server_requests_total")).toEqual([
      `{code=OK,model=,product=,protocol=rest,rpc=${streamRpc},status=200} 2`,
      `{code=OK,model=,product=,protocol=rest,rpc=${unaryRpc},status=200} 4`,
    ]);
  });
});
