import { describe, expect, it } from "vitest";
import { clientAddressOf } from "../../src/edge/client-address.js";
import { requestIdOf } from "../../src/edge/request-id.js";

const uuid = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

describe("requestIdOf", () => {
  it.each([
    "0f8fad5b-d9cb-469f-a165-70867728950e",
    "01ARZ3NDEKTSV4RRFFQ69G5FAV",
    "abc.DEF_123:x@y+z=/-",
    "a".repeat(128),
  ])("keeps a sane X-Request-Id: %s", (id) => {
    expect(requestIdOf(id)).toBe(id);
  });

  it.each([
    ["none", undefined],
    ["empty", ""],
    ["too long (129)", "a".repeat(129)],
    ["a space", "a b"],
    ["a quote", 'a"b'],
    ["a newline", "a\nb"],
    ["non-ASCII", "é"],
    ["sent twice", ["a", "b"]],
  ] as const)("replaces %s with a random UUID", (_name, header) => {
    const id = requestIdOf(header as string | string[] | undefined);
    expect(id).toMatch(uuid);
    expect(requestIdOf(header as string | string[] | undefined)).not.toBe(id);
  });
});

describe("clientAddressOf", () => {
  const peer = "10.0.0.9";
  it.each([
    ["no trusted proxy: the peer, the header ignored", 0, "1.1.1.1", peer],
    ["one proxy: the last entry (the address the proxy saw)", 1, "6.6.6.6, 1.1.1.1", "1.1.1.1"],
    ["one proxy, one entry", 1, "1.1.1.1", "1.1.1.1"],
    ["two proxies: the second from the right", 2, "6.6.6.6, 1.1.1.1, 35.1.1.1", "1.1.1.1"],
    ["two proxies, fewer entries: the leftmost", 2, "1.1.1.1", "1.1.1.1"],
    ["spaces trimmed", 1, "6.6.6.6 ,  2001:db8::1 ", "2001:db8::1"],
    ["an empty last entry: the peer", 1, "1.1.1.1,", peer],
  ] as const)("%s", (_name, hops, header, expected) => {
    expect(clientAddressOf(peer, { "x-forwarded-for": header }, hops)).toBe(expected);
  });

  it("takes the peer when a trusted proxy sent no header", () => {
    expect(clientAddressOf(peer, {}, 1)).toBe(peer);
  });
});
