/**
 * Products for the web-client tests: `product-dev` (echo) and `product-limited` (echo, one request per
 * minute, so the second call answers 429 with Retry-After).
 */
export const webProducts = {
  "product-dev": { providers: { echo: { models: ["echo-1"] } } },
  "product-limited": {
    rate_limit: { requests_per_minute: 1 },
    providers: { echo: { models: ["echo-1"] } },
  },
} as const;
