import { createContextKey } from "@connectrpc/connect";
import { AppError } from "../errors/index.js";

/** Products a caller may use: a list of product names, or "*" for every product. */
export type ProductGrant = readonly string[] | "*";

/**
 * The authenticated caller of a request. `kind` says which method proved the identity; `id` is the stable
 * caller id used for rate limits and logs (the JWT `sub`, or the HMAC key id).
 */
export type Principal =
  | {
      readonly kind: "jwt";
      /** The token's `sub`. */
      readonly id: string;
      /** The `kid` of the key that verified the token. */
      readonly keyId: string;
      readonly products: ProductGrant;
    }
  | {
      readonly kind: "hmac";
      /** The HMAC key id. */
      readonly id: string;
      readonly products: ProductGrant;
    };

/**
 * The caller of the current RPC, set by the auth interceptor. Undefined on public services (health,
 * reflection) and before the interceptor ran.
 */
export const principalKey = createContextKey<Principal | undefined>(undefined, {
  description: "authenticated caller",
});

/** Whether the caller's grant covers `product`. */
export function canUseProduct(principal: Principal, product: string): boolean {
  return principal.products === "*" || principal.products.includes(product);
}

/**
 * Throws AppError("forbidden") (403 / PERMISSION_DENIED `Forbidden`) unless the caller may use `product`,
 * and AppError("unauthenticated") when there is no caller at all (a wiring mistake: the RPC is not behind
 * the auth interceptor). Call it after the product-exists check (the order in src/services/chat-service.ts).
 */
export function assertCanUseProduct(
  principal: Principal | undefined,
  product: string,
): asserts principal is Principal {
  if (principal === undefined) throw new AppError("unauthenticated");
  if (!canUseProduct(principal, product)) {
    throw new AppError("forbidden", { cause: new Error(`caller may not use ${product}`) });
  }
}
