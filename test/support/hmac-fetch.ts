import { randomUUID } from "node:crypto";
import { signRequest } from "../../src/auth/index.js";

/**
 * A `fetch` for an SDK's `fetch` option that signs every request the SDK sends with the HMAC scheme
 * (docs/auth.md): method, path, query and body as sent, a fresh nonce each time (the server requires one by
 * default), and the SDK's own `Authorization` removed. While `tamper()` is true the signature covers a body
 * other than the one sent, so the server must refuse it.
 */
export function hmacSigningFetch(
  key: { readonly keyId: string; readonly secret: string },
  tamper: () => boolean = () => false,
): typeof fetch {
  return (input, init) => {
    const url = new URL(input instanceof Request ? input.url : String(input));
    const body = typeof init?.body === "string" ? init.body : "";
    const headers = new Headers(init?.headers);
    headers.delete("authorization");
    const signed = signRequest({
      ...key,
      nonce: randomUUID(),
      method: init?.method ?? "GET",
      path: url.pathname,
      query: url.search.slice(1),
      body: tamper() ? `${body} ` : body,
    });
    for (const [name, value] of Object.entries(signed)) headers.set(name, value);
    return fetch(url, { ...init, headers });
  };
}
