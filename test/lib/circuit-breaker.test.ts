import { describe, expect, it } from "vitest";
import { BreakerOpenError, createCircuitBreaker, type BreakerState } from "../../src/lib/circuit-breaker.js";
import { captureLog } from "../support/log-capture.js";

/** A breaker on a fake clock whose probe the test settles by hand. */
function setup(failureThreshold = 3) {
  const log = captureLog();
  let t = 0;
  let probes = 0;
  let settleProbe: ((ok: boolean) => void) | undefined;
  const changes: string[] = [];
  const breaker = createCircuitBreaker({
    name: "Dep",
    failureThreshold,
    coolDownMs: 1_000,
    logger: log.logger,
    now: () => t,
    probe: () => {
      probes += 1;
      return new Promise((resolve, reject) => {
        settleProbe = (ok) => (ok ? resolve(undefined) : reject(new Error("still down")));
      });
    },
    onStateChange: (state: BreakerState, previous: BreakerState) => changes.push(`${previous}->${state}`),
  });
  return {
    breaker,
    log,
    changes,
    advance: (ms: number) => (t += ms),
    probes: () => probes,
    settleProbe: async (ok: boolean) => {
      settleProbe?.(ok);
      await new Promise((resolve) => setImmediate(resolve));
    },
  };
}

const fail = () => Promise.reject(new Error("timeout"));
const succeed = () => Promise.resolve("ok");

describe("circuit breaker", () => {
  it("opens after the threshold of consecutive failures and then fails at once without calling", async () => {
    const { breaker, changes, log } = setup();
    await expect(breaker.run(fail)).rejects.toThrow("timeout");
    await expect(breaker.run(succeed)).resolves.toBe("ok"); // a success resets the count
    for (let i = 0; i < 3; i++) await expect(breaker.run(fail)).rejects.toThrow("timeout");
    expect(breaker.state).toBe("open");
    let called = false;
    await expect(
      breaker.run(() => {
        called = true;
        return succeed();
      }),
    ).rejects.toBeInstanceOf(BreakerOpenError);
    expect(called).toBe(false);
    expect(changes).toEqual(["closed->open"]);
    expect(log.records()).toMatchObject([
      {
        severity: "WARNING",
        breaker: "Dep",
        state: "open",
        consecutiveFailures: 3,
        message: "Dep circuit breaker open: calls use the local fallback without waiting for Dep",
      },
    ]);
  });

  it("probes once after the cool-down while callers keep failing fast, and closes when the probe succeeds", async () => {
    const { breaker, changes, advance, probes, settleProbe } = setup(1);
    await expect(breaker.run(fail)).rejects.toThrow("timeout");
    advance(999);
    await expect(breaker.run(succeed)).rejects.toBeInstanceOf(BreakerOpenError);
    expect(probes()).toBe(0);
    advance(1);
    // Cool-down over: one probe starts; this call and the next ones still fail fast while it runs.
    await expect(breaker.run(succeed)).rejects.toBeInstanceOf(BreakerOpenError);
    await expect(breaker.run(succeed)).rejects.toBeInstanceOf(BreakerOpenError);
    expect(breaker.state).toBe("half-open");
    expect(probes()).toBe(1);
    await settleProbe(true);
    expect(breaker.state).toBe("closed");
    await expect(breaker.run(succeed)).resolves.toBe("ok");
    expect(changes).toEqual(["closed->open", "open->half-open", "half-open->closed"]);
  });

  it("opens again for another cool-down when the probe fails", async () => {
    const { breaker, changes, advance, probes, settleProbe, log } = setup(1);
    await expect(breaker.run(fail)).rejects.toThrow();
    advance(1_000);
    await expect(breaker.run(succeed)).rejects.toBeInstanceOf(BreakerOpenError);
    await settleProbe(false);
    expect(breaker.state).toBe("open");
    advance(500);
    await expect(breaker.run(succeed)).rejects.toBeInstanceOf(BreakerOpenError);
    expect(probes()).toBe(1);
    expect(changes).toEqual(["closed->open", "open->half-open", "half-open->open"]);
    expect(log.records().at(-1)).toMatchObject({ state: "open", cause: "Error: still down" });
  });

  it("is not reopened by calls that were already waiting when it opened", async () => {
    const { breaker, changes, advance, settleProbe } = setup(2);
    let release: (() => void) | undefined;
    const slow = breaker.run(
      () =>
        new Promise((_resolve, reject) => {
          release = () => reject(new Error("late timeout"));
        }),
    );
    await expect(breaker.run(fail)).rejects.toThrow();
    await expect(breaker.run(fail)).rejects.toThrow();
    advance(1_000);
    await expect(breaker.run(succeed)).rejects.toBeInstanceOf(BreakerOpenError);
    await settleProbe(true);
    release?.();
    await expect(slow).rejects.toThrow("late timeout");
    expect(breaker.state).toBe("closed");
    expect(changes).toEqual(["closed->open", "open->half-open", "half-open->closed"]);
  });

  it("closes at once on reset (a reconnected client), without a probe", async () => {
    const { breaker, changes, probes, log } = setup(1);
    await expect(breaker.run(fail)).rejects.toThrow();
    breaker.reset("connection ready");
    await expect(breaker.run(succeed)).resolves.toBe("ok");
    breaker.reset("connection ready");
    expect(probes()).toBe(0);
    expect(changes).toEqual(["closed->open", "open->closed"]);
    expect(log.records().at(-1)).toMatchObject({ state: "closed", reason: "connection ready" });
  });

  it.each([
    [{ failureThreshold: 0 }, "failureThreshold must be a positive integer"],
    [{ failureThreshold: 1.5 }, "failureThreshold must be a positive integer"],
    [{ coolDownMs: -1 }, "coolDownMs must be >= 0"],
  ])("rejects %o naming the option", (bad, message) => {
    expect(() =>
      createCircuitBreaker({ name: "Dep", probe: succeed, logger: captureLog().logger, ...bad }),
    ).toThrow(message);
  });
});
