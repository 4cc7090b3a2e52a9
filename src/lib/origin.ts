/**
 * Browser origins allowed to call the server (`API_KEY_SERVER_CORS_ORIGINS`), in the two forms the README
 * documents: an exact origin (`https://app.example.com`, `http://localhost:5173`) or every subdomain of a
 * domain (`https://*.example.com`: `https://a.example.com`, `https://a.b.example.com`, not
 * `https://example.com` itself, same scheme and port).
 */
export type OriginRule =
  | { readonly kind: "exact"; readonly origin: string }
  | {
      readonly kind: "subdomains";
      /** `http:` or `https:` */
      readonly scheme: string;
      /** Lowercase, without the `*.`: `example.com`. */
      readonly domain: string;
      /** `:8443`, or "" for the scheme's default port. */
      readonly port: string;
    };

const patternForm = /^(https?):\/\/\*\.([^*/?#@]+?)(:\d+)?$/;

/**
 * Parses one allow-list entry, or returns undefined when it is neither form. An exact origin must be
 * written as browsers send it (lowercase, no default port, no path or trailing slash), since the `Origin`
 * header is compared byte for byte; a bare `*` and a wildcard anywhere but the leftmost label are refused,
 * as is a wildcard over a top-level domain (`https://*.com`).
 */
export function parseOriginRule(text: string): OriginRule | undefined {
  const pattern = patternForm.exec(text);
  if (pattern) {
    const [, scheme = "", domain = "", port = ""] = pattern;
    // Check the rest as a real origin with a stand-in label: same normalisation rules as the exact form.
    const sample = `${scheme}://x.${domain}${port}`;
    if (!domain.includes(".") || !isOrigin(sample)) return undefined;
    return { kind: "subdomains", scheme: `${scheme}:`, domain, port };
  }
  // WHATWG URLs accept "*" in a host name, so "https://a.*.example.com" would otherwise pass as exact.
  return !text.includes("*") && isOrigin(text) ? { kind: "exact", origin: text } : undefined;
}

/**
 * A predicate answering whether an `Origin` header value is allowed by any of `rules`. Built once: exact
 * origins go in a set, patterns become one anchored regular expression each.
 */
export function createOriginMatcher(rules: readonly OriginRule[]): (origin: string) => boolean {
  const exact = new Set<string>();
  const patterns: RegExp[] = [];
  for (const rule of rules) {
    if (rule.kind === "exact") {
      exact.add(rule.origin);
    } else {
      // One or more DNS labels (letters, digits, hyphens), then the domain and port exactly.
      patterns.push(
        new RegExp(
          `^${escape(rule.scheme)}//(?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?\\.)+${escape(rule.domain)}${escape(rule.port)}$`,
        ),
      );
    }
  }
  return (origin) => exact.has(origin) || patterns.some((p) => p.test(origin));
}

function isOrigin(text: string): boolean {
  const url = URL.parse(text);
  return url !== null && (url.protocol === "http:" || url.protocol === "https:") && url.origin === text;
}

function escape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}
