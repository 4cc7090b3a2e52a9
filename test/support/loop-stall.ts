import { monitorEventLoopDelay } from "node:perf_hooks";

/** How long this process's event loop was held while `run` ran, two ways. */
export interface LoopStall {
  /** The largest event-loop delay in wall time (monitorEventLoopDelay, 1 ms resolution), in ms. */
  readonly wallMs: number;
  /**
   * The most CPU time the main thread spent between two turns of a 1 ms timer (process.threadCpuUsage), in
   * ms: the longest the loop was held by work of its own (tasks, GC on the main thread), with the time
   * the thread waited for a core on a shared, loaded host left out. An upper bound of the longest task.
   */
  readonly cpuMs: number;
}

/** Runs `run` and measures the event-loop stalls of this process meanwhile (see LoopStall). */
export async function measureLoopStall<T>(run: () => Promise<T>): Promise<{ result: T; stall: LoopStall }> {
  const delay = monitorEventLoopDelay({ resolution: 1 });
  const cpu = () => {
    const { user, system } = process.threadCpuUsage();
    return (user + system) / 1000;
  };
  let last = cpu();
  let cpuMs = 0;
  const timer = setInterval(() => {
    const now = cpu();
    cpuMs = Math.max(cpuMs, now - last);
    last = now;
  }, 1);
  delay.enable();
  try {
    const result = await run();
    return { result, stall: { wallMs: delay.max / 1e6, cpuMs: Math.max(cpuMs, cpu() - last) } };
  } finally {
    delay.disable();
    clearInterval(timer);
  }
}
