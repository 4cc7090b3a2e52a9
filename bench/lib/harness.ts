// What the benchmark (run.ts) and the soak (soak.mjs) both need: the gRPC request from the generated code,
// memory cgroups like a Cloud Run instance's, a free port, and the production image's NODE_OPTIONS.
import { Buffer } from "node:buffer";
import { once } from "node:events";
import { existsSync } from "node:fs";
import { mkdir, readFile, rmdir, writeFile } from "node:fs/promises";
import net from "node:net";
import path from "node:path";
import process from "node:process";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath, pathToFileURL } from "node:url";
import { create, toBinary } from "@bufbuild/protobuf";
import type * as ChatProto from "../../gen/apikeyserver/v1/chat_pb.ts";

const ROOT = path.dirname(path.dirname(path.dirname(fileURLToPath(import.meta.url))));

/** The generated code of proto/apikeyserver/v1/chat.proto (gen/apikeyserver/v1/chat_pb.ts). */
export type ChatPb = typeof ChatProto;

/**
 * Loads the generated schemas of chat.proto as `npm run build` compiled them (dist/gen/). Node cannot run
 * gen/ itself: json_options_pb.ts, which chat_pb.ts imports, declares a TypeScript enum, which type
 * stripping refuses. The server under test is dist/ too, so both sides use the same build.
 */
export async function loadChatPb(): Promise<ChatPb> {
  const file = path.join(ROOT, "dist", "gen", "apikeyserver", "v1", "chat_pb.js");
  if (!existsSync(file))
    throw new Error(`${path.relative(ROOT, file)} not found: run \`npm run build\` first`);
  return (await import(pathToFileURL(file).href)) as ChatPb;
}

/** The protobuf encoding of the one-message chat request the benchmark and the soak send. */
export function encodeChatRequest(pb: ChatPb, product: string, model: string, text: string): Uint8Array {
  const { ChatCompletionRequestSchema } = pb;
  return toBinary(
    ChatCompletionRequestSchema,
    create(ChatCompletionRequestSchema, {
      product,
      model,
      messages: [{ role: "user", content: { case: "text", value: text } }],
    }),
  );
}

/** A gRPC length-prefixed message: flag byte 0 (not compressed), 4-byte big-endian length, the message. */
export function grpcFrame(message: Uint8Array): Buffer {
  const frame = Buffer.alloc(5 + message.length);
  frame.writeUInt32BE(message.length, 1);
  frame.set(message, 5);
  return frame;
}

/**
 * A memory cgroup for the processes under test, so that Node sizes its heap as it does on a Cloud Run
 * instance of that size (V8 derives its heap limits from the constrained memory it finds at start-up).
 * Returns the cgroup.procs file to join, or undefined (with the reason) when cgroups cannot be used here.
 */
export interface MemoryCgroup {
  /** The cgroup.procs file a process writes its pid to, to join; undefined when unconstrained. */
  procs: string | undefined;
  /** What the report says about it. */
  why: string;
}

export async function memoryCgroup(limitMib: number, role: string): Promise<MemoryCgroup> {
  if (limitMib === 0) return { procs: undefined, why: "unconstrained (--memory-limit 0)" };
  const bytes = String(limitMib * 2 ** 20);
  const name = `api-key-server-bench-${process.pid}-${role}`;
  const candidates = [
    // cgroup v2: a child of the root with the memory controller enabled.
    {
      dir: path.join("/sys/fs/cgroup", name),
      limitFile: "memory.max",
      probe: "/sys/fs/cgroup/cgroup.controllers",
    },
    // cgroup v1 memory hierarchy.
    {
      dir: path.join("/sys/fs/cgroup/memory", name),
      limitFile: "memory.limit_in_bytes",
      probe: "/sys/fs/cgroup/memory/cgroup.procs",
    },
  ];
  let why = "no writable cgroup memory controller";
  for (const c of candidates) {
    if (!existsSync(c.probe)) continue;
    try {
      await mkdir(c.dir, { recursive: true });
      await writeFile(path.join(c.dir, c.limitFile), bytes);
      cgroupDirs.push(c.dir);
      return { procs: path.join(c.dir, "cgroup.procs"), why: `each in a ${limitMib} MiB memory cgroup` };
    } catch (error) {
      why = `cannot use ${c.dir}: ${error instanceof Error ? error.message : String(error)}`;
    }
  }
  return { procs: undefined, why: `unconstrained (${why})` };
}

const cgroupDirs: string[] = [];

/** Removes the benchmark's cgroups once their processes are gone (rmdir fails while one is still inside). */
export async function removeCgroups(): Promise<void> {
  for (const dir of cgroupDirs.splice(0)) {
    for (let attempt = 0; attempt < 20; attempt++) {
      try {
        await rmdir(dir);
        break;
      } catch {
        await sleep(100);
      }
    }
  }
}

/**
 * `sh` arguments that join the cgroup and then exec the command that follows them, so the process is in
 * the cgroup before Node starts (V8 reads the limit once, at start-up).
 */
export function joinCgroup(procs: string): string[] {
  return ["-c", `echo $$ > '${procs}' && exec "$@"`, "sh"];
}

/** The command line that starts `argv` inside the cgroup (unchanged without one). */
export function inCgroup(procs: string | undefined, argv: string[]): string[] {
  return procs === undefined ? argv : ["/bin/sh", ...joinCgroup(procs), ...argv];
}

export async function freePort(): Promise<number> {
  const server = net.createServer();
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const address = server.address();
  const port = typeof address === "object" && address !== null ? address.port : 0;
  server.close();
  await once(server, "close");
  return port;
}

/**
 * The NODE_OPTIONS the production image sets (the Dockerfile's `ENV ... NODE_OPTIONS="..."`), so the
 * server runs with the heap settings it has on Cloud Run; "" when the Dockerfile sets none.
 */
export async function productionNodeOptions(): Promise<string> {
  const dockerfile = await readFile(path.join(ROOT, "Dockerfile"), "utf8").catch(() => "");
  return /^\s*NODE_OPTIONS="([^"]*)"/m.exec(dockerfile)?.[1] ?? "";
}
