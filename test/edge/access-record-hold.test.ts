import * as http from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { holdAccessRecord, whenRecordSettled, type AccessRecord } from "../../src/edge/access-record.js";
import { composeEdge, createAccessLogEdge, type Exchange } from "../../src/edge/index.js";
import { captureLog } from "../support/log-capture.js";

// A call still settling its usage holds its AccessRecord: the access line waits for it, so the line of a
// call whose response closed first (a client that cancelled) carries what the call was charged.

describe("holdAccessRecord / whenRecordSettled", () => {
  it("nothing holds a fresh record", () => {
    expect(whenRecordSettled({}, 1_000)).toBeUndefined();
  });

  it("resolves once every hold is released; a release is idempotent", async () => {
    const record: AccessRecord = {};
    const first = holdAccessRecord(record);
    const second = holdAccessRecord(record);
    const settled = whenRecordSettled(record, 60_000);
    expect(settled).toBeDefined();
    let done = false;
    void settled?.then(() => (done = true));
    first();
    first();
    await new Promise((resolve) => setImmediate(resolve));
    expect(done).toBe(false);
    second();
    await settled;
    expect(done).toBe(true);
    expect(whenRecordSettled(record, 1_000)).toBeUndefined();
  });
});

describe("the access line of a held record", () => {
  const log = captureLog();
  let server: http.Server;
  let url: string;
  /** The release of the request in progress, and its exchange. */
  let pending: { release: () => void; exchange: Exchange } | undefined;

  beforeAll(async () => {
    const listener = composeEdge({
      entries: [createAccessLogEdge({ logger: log.logger, gcpProjectId: undefined })],
      dispatch: (exchange) => {
        pending = { release: holdAccessRecord(exchange.record), exchange };
        exchange.res.writeHead(200, { "content-type": "text/plain" });
        exchange.res.end("ok");
      },
    });
    server = http.createServer(listener);
    server.listen(0, "127.0.0.1");
    await new Promise((resolve) => server.once("listening", resolve));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/x`;
  });

  afterAll(async () => {
    await new Promise((resolve) => server.close(resolve));
  });

  it("is written when the call settles, with what it recorded after the response closed", async () => {
    const response = await fetch(url);
    expect(await response.text()).toBe("ok");
    // The response is over; the call has not settled: no line yet.
    await new Promise((resolve) => setImmediate(resolve));
    const accessLines = () => log.records().filter((r) => "httpRequest" in r);
    expect(accessLines()).toEqual([]);
    const { release, exchange } = pending ?? expect.unreachable("no request seen");
    exchange.record.promptTokens = 7;
    exchange.record.usageEstimated = true;
    release();
    while (accessLines().length === 0) await new Promise((resolve) => setImmediate(resolve));
    expect(accessLines()).toMatchObject([
      { httpRequest: { status: 200 }, promptTokens: 7, usageEstimated: true },
    ]);
  });
});
