/**
 * Per-call abort controllers that a shutdown signal aborts together, with its reason, as Connect links
 * each call's context to its `shutdownSignal`: one listener on the shutdown signal for all calls rather
 * than one per call. `open()` at the start of a call (already aborted when the shutdown has begun),
 * `close()` when the call is over.
 */
export interface CallSignals {
  open(): AbortController;
  close(controller: AbortController): void;
}

export function createCallSignals(shutdownSignal: AbortSignal | undefined): CallSignals {
  const live = new Set<AbortController>();
  shutdownSignal?.addEventListener(
    "abort",
    () => {
      for (const controller of live) controller.abort(shutdownSignal.reason);
    },
    { once: true },
  );
  return {
    open() {
      const controller = new AbortController();
      if (shutdownSignal?.aborted === true) controller.abort(shutdownSignal.reason);
      live.add(controller);
      return controller;
    },
    close(controller) {
      live.delete(controller);
    },
  };
}

/**
 * The abort reason of a call's context once the call has ended normally (made once: an abort without a
 * reason builds a DOMException and captures a stack on every call).
 */
export const callEnded = new DOMException("This operation was aborted", "AbortError");
