import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { ErrorInfoSchema } from "../../gen/google/rpc/error_details_pb.js";
import type { BookSchema, LibraryService } from "../../gen/testing/transcode/v1/transcode_pb.js";
import { AppError } from "../../src/errors/index.js";

/** Tags enough to put a message over 1 KiB (the size from which connect compresses an answer). */
const bigTags = Array.from({ length: 200 }, (_, i) => `tag ${i}`);
/** Tags enough to put a message over the differential tests' writeMaxBytes (4 KiB). */
const hugeTags = Array.from({ length: 1000 }, (_, i) => `tag ${i}`);

/** The error a failing call throws, by name: what a service can throw, each form the codecs must write. */
function failure(kind: string): Error {
  const code = /^code:(\d+)$/.exec(kind);
  if (code !== null) return new ConnectError(`failed with ${code[1]}`, Number(code[1]));
  switch (kind) {
    case "app":
      return new AppError("rate_limited", { headers: { "retry-after": "3" }, retryAfterMs: 2500 });
    case "plain":
      return new Error("not a ConnectError");
    default:
      return new ConnectError("no: a=b, 100% café", Code.FailedPrecondition, { "x-meta": "m" }, [
        { desc: ErrorInfoSchema, value: { reason: "R", domain: "d" } },
      ]);
  }
}

/** The `i`th book of a WatchShelf stream: shelf "big" gives books over 1 KiB, "huge" a second over 4 KiB. */
function book(shelf: string, i: number): MessageInitShape<typeof BookSchema> {
  const name = `${shelf}/${i}`;
  if (shelf === "big") return { name, tags: bigTags };
  if (shelf === "huge" && i === 1) return { name, tags: hugeTags };
  return { name, pages: BigInt(i) };
}

/**
 * The test implementation of testing.transcode.v1.LibraryService the differential tests serve from both
 * servers: every answer form a protocol writes (messages, headers, trailers, each kind of error, a
 * deadline) is reachable from the request.
 * - GetBook echoes its request, with response headers (`x-seen-name`, `x-seen-custom` from `x-custom`)
 *   and a trailer of two values; name "big" / "huge" answer over 1 KiB / 4 KiB, "mux" sets a header named
 *   like a muxed trailer.
 * - Fail throws by `kind`: "code:N" a ConnectError of code N, "app" an AppError with headers, "plain" a
 *   plain Error, "details" a ConnectError with details and metadata.
 * - Ping waits for the deadline (or cancellation), then reports why.
 * - WatchShelf sets the same headers and trailer, yields `count` books (shelf "big"/"huge" as above;
 *   "late" sets a header after the first book), then fails as Fail does for kind `shelf` when
 *   `fail_after`, or waits for the deadline when `hang`.
 */
export const libraryService: ServiceImpl<typeof LibraryService> = {
  getBook(request, ctx) {
    ctx.responseHeader.set("x-seen-name", request.name);
    ctx.responseHeader.set("x-seen-custom", ctx.requestHeader.get("x-custom") ?? "");
    ctx.responseTrailer.set("x-trailer", "t");
    ctx.responseTrailer.append("x-trailer", "u");
    // A header that looks like a muxed trailer: connect appends the real trailer's values to it.
    if (request.name === "mux") ctx.responseHeader.set("trailer-x-trailer", "h");
    if (request.name === "big") return { ...request, tags: bigTags };
    if (request.name === "huge") return { ...request, tags: hugeTags };
    return request;
  },
  fail(request) {
    if (request.kind === "") return request;
    throw failure(request.kind);
  },
  async ping(_request, ctx) {
    await new Promise((resolve) => ctx.signal.addEventListener("abort", resolve, { once: true }));
    throw ConnectError.from(ctx.signal.reason);
  },
  watchShelf(request, ctx) {
    ctx.responseHeader.set("x-seen-name", request.shelf);
    ctx.responseHeader.set("x-seen-custom", ctx.requestHeader.get("x-custom") ?? "");
    ctx.responseTrailer.set("x-trailer", "t");
    ctx.responseTrailer.append("x-trailer", "u");
    return (async function* () {
      for (let i = 0; i < request.count; i++) {
        await Promise.resolve();
        yield book(request.shelf, i);
        if (request.shelf === "late") ctx.responseHeader.set("x-late", "1");
      }
      if (request.failAfter) throw failure(request.shelf);
      if (request.hang) {
        await new Promise((resolve) => ctx.signal.addEventListener("abort", resolve, { once: true }));
        throw ConnectError.from(ctx.signal.reason);
      }
    })();
  },
  createBook: (r) => r,
  updateBook: (r) => r,
  deleteBook: (r) => r,
  archiveBook: (r) => r,
  searchBooks: (r) => r,
  getFile: (r) => r,
  listBooks: () => ({}),
  hidden: (r) => r,
};
