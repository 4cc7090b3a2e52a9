import { execFile } from "node:child_process";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";

/** Outcome of a child process that may exit non-zero (curl, buf). */
export interface RunResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** Where and with what environment `run` starts the child (default: the test's own). */
export interface RunOptions {
  readonly cwd?: string;
  readonly env?: NodeJS.ProcessEnv;
}

export function run(
  file: string,
  args: readonly string[],
  timeoutMs = 15_000,
  options: RunOptions = {},
): Promise<RunResult> {
  const spawnOptions = { ...options, timeout: timeoutMs, maxBuffer: 16 * 1024 * 1024 };
  return new Promise((resolve, reject) => {
    execFile(file, [...args], spawnOptions, (err, stdout, stderr) => {
      if (err && typeof err.code !== "number") {
        reject(new Error(`${file} failed to run`, { cause: err }));
        return;
      }
      resolve({ code: typeof err?.code === "number" ? err.code : 0, stdout, stderr });
    });
  });
}

/** The real `buf` binary shipped by @bufbuild/buf (called directly: its JS shim would need Node on PATH). */
export const bufBinary: string = (() => {
  const require = createRequire(import.meta.url);
  return join(dirname(require.resolve("@bufbuild/buf-linux-x64/package.json")), "bin", "buf");
})();

/**
 * curl with the response status line and headers in `head` and the body in `body`; `-sS` so failures show
 * on stderr. `status` is 0 when no HTTP response came back.
 */
export async function curl(args: readonly string[]): Promise<RunResult & { status: number; body: string }> {
  const result = await run("/usr/bin/curl", ["-sS", "-w", "\n%{http_code}", ...args]);
  const cut = result.stdout.lastIndexOf("\n");
  return {
    ...result,
    body: result.stdout.slice(0, cut),
    status: Number(result.stdout.slice(cut + 1)),
  };
}

/** grpc-js loaded from the .proto files (no codegen), the way an ordinary gRPC client is written. */
export function loadGrpcPackage(): grpc.GrpcObject {
  const definition = protoLoader.loadSync(["grpc/health/v1/health.proto", "apikeyserver/v1/chat.proto"], {
    includeDirs: ["third_party/proto", "proto"],
    keepCase: true,
    longs: String,
    enums: String,
    defaults: true,
  });
  return grpc.loadPackageDefinition(definition);
}

/** A generic grpc-js client constructor from a loaded package, by dotted service name. */
export function grpcClient(pkg: grpc.GrpcObject, service: string, port: number): grpc.Client {
  let node: unknown = pkg;
  for (const part of service.split(".")) node = (node as Record<string, unknown>)[part];
  const Ctor = node as grpc.ServiceClientConstructor;
  return new Ctor(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
}

/** Calls a unary method on a grpc-js client and settles with the error or the response. */
export function grpcUnary(
  client: grpc.Client,
  method: string,
  request: object,
): Promise<{ error: grpc.ServiceError | null; response: unknown }> {
  return new Promise((resolve) => {
    type UnaryFn = (req: object, cb: (error: grpc.ServiceError | null, response: unknown) => void) => void;
    const fn = (client as unknown as Record<string, UnaryFn>)[method];
    if (!fn) throw new Error(`no method ${method}`);
    fn.call(client, request, (error, response) => resolve({ error, response }));
  });
}
