import type { ConnectRouter, HandlerContext } from "@connectrpc/connect";
import { Code, ConnectError } from "@connectrpc/connect";
import { HealthService } from "../../gen/apikeyserver/v1/health_pb.js";
import { ChatService } from "../../gen/apikeyserver/v1/chat_pb.js";
import { create } from "@bufbuild/protobuf";
import {
  Health,
  HealthCheckResponseSchema,
  HealthCheckResponse_ServingStatus as ServingStatus,
  type HealthCheckResponse,
} from "../../gen/grpc/health/v1/health_pb.js";
import { AppError } from "../errors/index.js";

/** What the server knows about its own readiness; read on every health call, so keep it cheap. */
export interface Readiness {
  /** True once the product secret has been loaded. */
  readonly ready: boolean;
  /** Number of products in the loaded product secret. */
  readonly products: number;
  /** Enabled caller authentication methods ("jwt", "hmac"). */
  readonly authMethods: readonly string[];
  /** Seconds since the current secrets were loaded. */
  readonly secretsAgeSeconds: number;
}

export interface HealthOptions {
  readonly readiness: () => Readiness;
  /** Server version reported by `GET /health` (package.json version). */
  readonly version: string;
  /**
   * Registers a listener called whenever readiness may have changed; returns the unsubscribe function.
   * `grpc.health.v1.Health/Watch` then pushes changes at once. Without it, each Watch re-reads readiness
   * every `pollIntervalMs`.
   */
  readonly subscribe?: (listener: () => void) => () => void;
  /** Watch polling interval when `subscribe` is not given. Default 1 000 ms. */
  readonly pollIntervalMs?: number;
  /**
   * Service names `grpc.health.v1.Health` knows besides "" (the whole server); all share the server's
   * readiness. Default: `apikeyserver.v1.ChatService`.
   */
  readonly services?: readonly string[];
}

/**
 * Registers `apikeyserver.v1.HealthService` (`GET /health`: the status when ready, UNAVAILABLE "Service not
 * ready" / HTTP 503 when not) and the standard `grpc.health.v1.Health` (Check, Watch, List: SERVING when
 * ready, NOT_SERVING when not; an unknown service name is NOT_FOUND on Check, and SERVICE_UNKNOWN on Watch,
 * which keeps the stream open). Neither needs caller authentication (docs/auth.md).
 */
export function registerHealth(router: ConnectRouter, options: HealthOptions): void {
  const { readiness, version, subscribe } = options;
  const pollIntervalMs = options.pollIntervalMs ?? 1_000;
  if (!Number.isSafeInteger(pollIntervalMs) || pollIntervalMs <= 0) {
    throw new Error(`registerHealth: pollIntervalMs must be a positive integer, got ${pollIntervalMs}`);
  }
  const known = new Set(["", ...(options.services ?? [ChatService.typeName])]);
  const statusNow = (): ServingStatus =>
    readiness().ready ? ServingStatus.SERVING : ServingStatus.NOT_SERVING;

  router.service(HealthService, {
    check() {
      const state = readiness();
      if (!state.ready) throw new AppError("not_ready");
      return {
        status: "ok",
        version,
        products: state.products,
        authMethods: [...state.authMethods],
        secretsAgeSeconds: BigInt(Math.max(0, Math.floor(state.secretsAgeSeconds))),
      };
    },
  });

  router.service(Health, {
    check(req) {
      if (!known.has(req.service)) throw new ConnectError("unknown service", Code.NotFound);
      return { status: statusNow() };
    },

    async *watch(req, ctx) {
      if (!known.has(req.service)) {
        // The protocol keeps the stream open: the service might become known later (here it never does).
        yield { status: ServingStatus.SERVICE_UNKNOWN };
        await aborted(ctx);
        return;
      }
      const waker = subscribe ? subscribedWaker(subscribe, ctx) : pollingWaker(pollIntervalMs, ctx);
      try {
        let last: ServingStatus | undefined;
        while (!ctx.signal.aborted) {
          const status = statusNow();
          if (status !== last) {
            last = status;
            yield { status };
          }
          await waker.wait();
        }
      } finally {
        waker.dispose();
      }
    },

    list() {
      const status = statusNow();
      const statuses: Record<string, HealthCheckResponse> = {};
      for (const name of known) statuses[name] = create(HealthCheckResponseSchema, { status });
      return { statuses };
    },
  });
}

interface Waker {
  /** Resolves when readiness may have changed, or when the call ends. */
  wait(): Promise<void>;
  dispose(): void;
}

function subscribedWaker(subscribe: (listener: () => void) => () => void, ctx: HandlerContext): Waker {
  // A change between two waits is remembered, so none is lost while the stream is writing.
  let pending = false;
  let wake: (() => void) | undefined;
  const fire = () => {
    pending = true;
    wake?.();
  };
  const unsubscribe = subscribe(fire);
  ctx.signal.addEventListener("abort", fire);
  return {
    wait() {
      if (pending) {
        pending = false;
        return Promise.resolve();
      }
      return new Promise((resolve) => {
        wake = () => {
          pending = false;
          wake = undefined;
          resolve();
        };
      });
    },
    dispose() {
      unsubscribe();
      ctx.signal.removeEventListener("abort", fire);
    },
  };
}

function pollingWaker(intervalMs: number, ctx: HandlerContext): Waker {
  let cancel: (() => void) | undefined;
  return {
    wait() {
      return new Promise((resolve) => {
        const done = () => {
          clearTimeout(timer);
          ctx.signal.removeEventListener("abort", done);
          cancel = undefined;
          resolve();
        };
        const timer = setTimeout(done, intervalMs);
        ctx.signal.addEventListener("abort", done);
        cancel = done;
      });
    },
    dispose() {
      cancel?.();
    },
  };
}

function aborted(ctx: HandlerContext): Promise<void> {
  if (ctx.signal.aborted) return Promise.resolve();
  return new Promise((resolve) => ctx.signal.addEventListener("abort", () => resolve(), { once: true }));
}
