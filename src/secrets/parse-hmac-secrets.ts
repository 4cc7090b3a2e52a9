import {
  childPath,
  expectIdentifier,
  expectKeys,
  expectObject,
  expectString,
  expectStringList,
  fail,
  parseJson,
} from "./format-error.js";
import type { HmacKey } from "./types.js";

/** Shortest accepted shared secret, in characters (UTF-8 bytes of at least this many characters). */
export const minHmacSecretLength = 32;

/**
 * Validates the HMAC secret (`hmac-secrets`): `{ "<key id>": { "secret": "...", "products": [...] | "*" } }`.
 * Throws SecretFormatError naming the JSON path at fault (never the secret).
 */
export function parseHmacSecrets(text: string): ReadonlyMap<string, HmacKey> {
  const root = expectObject(parseJson(text), "$");
  const keys = new Map<string, HmacKey>();
  for (const keyId of Object.keys(root)) {
    const path = childPath("$", keyId);
    expectIdentifier(keyId, path, "a key id");
    const entry = expectObject(root[keyId], path);
    expectKeys(entry, ["secret", "products"], path);
    const secretPath = childPath(path, "secret");
    const secret = expectString(entry.secret, secretPath);
    if ([...secret].length < minHmacSecretLength) {
      fail(secretPath, `must be at least ${minHmacSecretLength} characters`);
    }
    const productsPath = childPath(path, "products");
    if (entry.products === undefined) fail(productsPath, 'required (a list of products or "*")');
    const products =
      entry.products === "*" ? "*" : Object.freeze(expectStringList(entry.products, productsPath));
    keys.set(keyId, Object.freeze({ keyId, secret: new TextEncoder().encode(secret), products }));
  }
  // An empty set would refuse every HMAC caller: one bad push, a full outage. HMAC is turned off by
  // deleting the secret (docs/auth.md), so an empty one is a mistake, and the last good version stays.
  if (keys.size === 0) fail("$", "no keys (to turn HMAC off, delete the secret instead)");
  return keys;
}
