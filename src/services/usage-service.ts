import { create } from "@bufbuild/protobuf";
import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import {
  BudgetWindowUsageSchema,
  GetUsageResponseSchema,
  type UsageService,
} from "../../gen/apikeyserver/v1/usage_pb.js";
import type { Principal } from "../auth/index.js";
import type { ChatCore } from "../chat/chat-core.js";
import { AppError } from "../errors/index.js";
import type { CallGate } from "../limits/index.js";
import { toUsd } from "../usage/cost.js";

export interface UsageServiceOptions {
  /** Resolves the product as the chat RPCs do: it exists, the caller may use it (404 / 403 otherwise). */
  readonly core: Pick<ChatCore, "product">;
  /** The authenticated caller (set by the auth interceptor). */
  readonly caller: (ctx: HandlerContext) => Principal | undefined;
  readonly gate: Pick<CallGate, "usage">;
}

/**
 * UsageService.GetUsage (REST `GET /v1/usage/{product}`): the budget windows of the product that apply
 * to the calling principal, read from the same store that admits calls (docs/budgets.md).
 */
export function createUsageService(options: UsageServiceOptions): ServiceImpl<typeof UsageService> {
  return {
    async getUsage(request, ctx) {
      const product = options.core.product(request.product, ctx);
      const caller = options.caller(ctx);
      if (!caller) throw new AppError("unauthenticated", { cause: new Error("no caller in context") });
      const windows = await options.gate.usage(product, caller);
      return create(GetUsageResponseSchema, {
        product: product.name,
        caller: `${caller.kind}:${caller.id}`,
        windows: windows.map((w) => {
          const usedUsd = toUsd(w.usedNanoUsd);
          return create(BudgetWindowUsageSchema, {
            scope: w.scope,
            window: w.window,
            usedTokens: BigInt(w.usedTokens),
            usedUsd,
            ...(w.limitTokens === undefined
              ? {}
              : {
                  limitTokens: BigInt(w.limitTokens),
                  remainingTokens: BigInt(Math.max(0, w.limitTokens - w.usedTokens)),
                }),
            ...(w.limitNanoUsd === undefined
              ? {}
              : {
                  limitUsd: toUsd(w.limitNanoUsd),
                  remainingUsd: toUsd(Math.max(0, w.limitNanoUsd - w.usedNanoUsd)),
                }),
            resetsAt: new Date(w.resetsAtMs).toISOString().replace(".000Z", "Z"),
          });
        }),
      });
    },
  };
}
