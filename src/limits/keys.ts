/** What a limit counts. */
export type RateLimitDimension = "requests" | "tokens";

/**
 * The limiter key of one product, caller and dimension: `rl:<product>:<callerKind>:<callerId>:<dimension>`,
 * each part percent-encoded (`encodeURIComponent`), so a ':' inside a caller id cannot make two callers
 * share a key. The JWT `sub` "a:b" of product "p" and the sub "b" of product "p:a" stay distinct.
 */
export function rateLimitKey(
  product: string,
  caller: { readonly kind: "jwt" | "hmac"; readonly id: string },
  dimension: RateLimitDimension,
): string {
  return `rl:${encodeURIComponent(product)}:${caller.kind}:${encodeURIComponent(caller.id)}:${dimension}`;
}
