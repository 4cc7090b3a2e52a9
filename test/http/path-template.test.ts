import { describe, expect, it } from "vitest";
import { parsePathTemplate } from "../../src/protocols/rest/path-template.js";

describe("parsePathTemplate", () => {
  it.each([
    { template: "/v1/{name}", path: "/v1/a%20b%2Fc", values: ["a b/c"] },
    {
      template: "/v1/{name=shelves/*/books/*}",
      path: "/v1/shelves/s/books/b%2Fc%20d",
      values: ["shelves/s/books/b%2Fc d"],
    },
    { template: "/v1/{name=shelves/*/books/*}", path: "/v1/shelves/s/books", values: undefined },
    { template: "/v1/{name=shelves/*/books/*}", path: "/v1/shelves//books/b", values: undefined },
    { template: "/v1/{book.name=shelves/*}/x", path: "/v1/shelves/1/x", values: ["shelves/1"] },
    { template: "/v1/files/{path=**}", path: "/v1/files/a/b/c.txt", values: ["a/b/c.txt"] },
    { template: "/v1/files/**", path: "/v1/files/a/b", values: [] },
    { template: "/v1/{name}:archive", path: "/v1/x:archive", values: ["x"] },
    { template: "/v1/{name}:archive", path: "/v1/x", values: undefined },
    { template: "/v1/{name}", path: "/v1/x:archive", values: ["x:archive"] },
    { template: "/v1/*/{id}", path: "/v1/any/7", values: ["7"] },
    { template: "/v1/{name}", path: "/v1/%E0%A4%A", values: undefined },
    { template: "/v1/{name}", path: "v1/x", values: undefined },
  ])("$template matches $path → $values", ({ template, path, values }) => {
    expect(parsePathTemplate(template).match(path)).toStrictEqual(values);
  });

  it.each([
    { template: "v1/x", why: "must start with /" },
    { template: "/v1/**/x", why: '"**" must be the last segment' },
    { template: "/v1/{a.}", why: 'bad field path "a."' },
    { template: "/v1/{a=b/{c}}", why: "nested variable" },
    { template: "/v1/a b", why: 'bad segment "a b"' },
  ])("rejects $template", ({ template, why }) => {
    expect(() => parsePathTemplate(template)).toThrow(
      `invalid google.api.http path template "${template}": ${why}`,
    );
  });
});
