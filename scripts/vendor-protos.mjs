// Copies the third-party .proto files the contract imports out of their npm packages into .proto-vendor/,
// laid out under their canonical import paths, so `buf generate` runs offline with no Buf Schema Registry.
import { cpSync, mkdirSync, rmSync } from "node:fs";
import { dirname, join } from "node:path";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const pkgDir = (name) => dirname(require.resolve(`${name}/package.json`));
const out = ".proto-vendor";

/** [npm package, path inside it, canonical import path] */
const files = [
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

rmSync(out, { recursive: true, force: true });
for (const [pkg, from, to] of files) {
  mkdirSync(dirname(join(out, to)), { recursive: true });
  cpSync(join(pkgDir(pkg), from), join(out, to));
}
