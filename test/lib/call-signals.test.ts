import { describe, expect, it } from "vitest";
import { createCallSignals } from "../../src/call/call-registry.js";

describe("createCallSignals", () => {
  it("aborts every open call with the shutdown reason, and only those", () => {
    const shutdown = new AbortController();
    const calls = createCallSignals(shutdown.signal);
    const a = calls.open();
    const b = calls.open();
    const done = calls.open();
    calls.close(done);
    const reason = new Error("shutting down");
    shutdown.abort(reason);
    expect(a.signal.reason).toBe(reason);
    expect(b.signal.reason).toBe(reason);
    expect(done.signal.aborted).toBe(false);
  });

  it("a call opened after the shutdown starts aborted", () => {
    const shutdown = new AbortController();
    const calls = createCallSignals(shutdown.signal);
    shutdown.abort(new Error("late"));
    const late = calls.open();
    expect(late.signal.aborted).toBe(true);
    expect((late.signal.reason as Error).message).toBe("late");
  });

  it("without a shutdown signal, calls are plain controllers", () => {
    const calls = createCallSignals(undefined);
    const c = calls.open();
    expect(c.signal.aborted).toBe(false);
    calls.close(c);
  });
});
