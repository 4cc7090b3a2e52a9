import type { ProductConfig } from "../secrets/types.js";

/**
 * The one-line refusal for budgets that each Cloud Run instance would keep for itself: products with
 * `budgets`, on Cloud Run (`K_SERVICE` set), without REDIS_URL. Undefined when there is no such problem.
 * Elsewhere (one process, a developer's machine) budgets in memory are what they say.
 */
export function budgetStoreProblem(
  products: ReadonlyMap<string, Pick<ProductConfig, "name" | "budgets">>,
  cloudRun: boolean,
  redis: boolean,
): string | undefined {
  if (!cloudRun || redis) return undefined;
  const budgeted = [...products.values()].filter((p) => p.budgets !== undefined).map((p) => p.name);
  if (budgeted.length === 0) return undefined;
  return `budgets are configured (products ${budgeted.join(", ")}) but REDIS_URL is not set: on Cloud Run each instance would hold a budget of its own; set REDIS_URL (Memorystore) or remove the budgets`;
}
