// Refreshes the third-party .proto files the contract imports, copied out of the npm packages that ship
// them into third_party/proto/ under their canonical import paths. The copies are committed, so `buf build`,
// `buf curl` and `buf generate` work on a fresh clone with no npm step and no Buf Schema Registry; run this
// after upgrading one of those packages (a test fails while the copies differ from the installed packages).
import { cpSync, mkdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { createRequire } from "node:module";
import process from "node:process";

const require = createRequire(import.meta.url);
const pkgDir = (name) => dirname(require.resolve(`${name}/package.json`));

/** Where the copies live (a buf module of its own, see buf.yaml). */
const vendorDir = "third_party/proto";

/** [npm package, path inside it, canonical import path] */
const vendoredProtos = [
  ["google-proto-files", "google/api/annotations.proto", "google/api/annotations.proto"],
  ["google-proto-files", "google/api/http.proto", "google/api/http.proto"],
  ["google-proto-files", "google/rpc/error_details.proto", "google/rpc/error_details.proto"],
  ["grpc-health-check", "proto/health/v1/health.proto", "grpc/health/v1/health.proto"],
  [
    "@grpc/reflection",
    "build/proto/grpc/reflection/v1/reflection.proto",
    "grpc/reflection/v1/reflection.proto",
  ],
  [
    "@grpc/reflection",
    "build/proto/grpc/reflection/v1alpha/reflection.proto",
    "grpc/reflection/v1alpha/reflection.proto",
  ],
];

// `node scripts/vendor-protos.mjs [dir]`: the test copies into a temporary folder and compares.
const out = process.argv[2] ?? vendorDir;
for (const [pkg, from, to] of vendoredProtos) {
  mkdirSync(dirname(join(out, to)), { recursive: true });
  cpSync(join(pkgDir(pkg), from), join(out, to));
}
