// What the benchmark (run.mjs) and the soak (soak.mjs) both need: the hand-encoded request, memory
// cgroups like a Cloud Run instance's, a free port, and the production image's NODE_OPTIONS.
import { Buffer } from "node:buffer";
import { once } from "node:events";
import { existsSync } from "node:fs";
import { mkdir, readFile, rmdir, writeFile } from "node:fs/promises";
import net from "node:net";
import path from "node:path";
import process from "node:process";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";

const ROOT = path.dirname(path.dirname(path.dirname(fileURLToPath(import.meta.url))));

// Hand-written protobuf encoding of the one request the benchmark sends, so the harness does not
// depend on the build output. Field numbers from proto/apikeyserver/v1/chat.proto:
// ChatCompletionRequest{product=1, messages=2, model=3}, ChatMessage{role=1, text=9 (the `content`
// oneof's string member)}. The pre-flight call proves the server decodes it.

function varint(n) {
  const bytes = [];
  while (n > 0x7f) {
    bytes.push((n & 0x7f) | 0x80);
    n >>>= 7;
  }
  bytes.push(n);
  return Buffer.from(bytes);
}

function lengthDelimited(field, payload) {
  const bytes = typeof payload === "string" ? Buffer.from(payload) : payload;
  return Buffer.concat([varint((field << 3) | 2), varint(bytes.length), bytes]);
}

export function encodeChatRequest(product, model, role, content) {
  const message = Buffer.concat([lengthDelimited(1, role), lengthDelimited(9, content)]);
  return Buffer.concat([lengthDelimited(1, product), lengthDelimited(2, message), lengthDelimited(3, model)]);
}

export function grpcFrame(message) {
  const header = Buffer.alloc(5);
  header.writeUInt32BE(message.length, 1);
  return Buffer.concat([header, message]);
}

/**
 * A memory cgroup for the processes under test, so that Node sizes its heap as it does on a Cloud Run
 * instance of that size (V8 derives its heap limits from the constrained memory it finds at start-up).
 * Returns the cgroup.procs file to join, or undefined (with the reason) when cgroups cannot be used here.
 */
export async function memoryCgroup(limitMib, role) {
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

const cgroupDirs = [];

/** Removes the benchmark's cgroups once their processes are gone (rmdir fails while one is still inside). */
export async function removeCgroups() {
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
export function joinCgroup(procs) {
  return ["-c", `echo $$ > '${procs}' && exec "$@"`, "sh"];
}

/** The command line that starts `argv` inside the cgroup (unchanged without one). */
export function inCgroup(procs, argv) {
  return procs === undefined ? argv : ["/bin/sh", ...joinCgroup(procs), ...argv];
}

export async function freePort() {
  const server = net.createServer();
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const { port } = server.address();
  server.close();
  await once(server, "close");
  return port;
}

/**
 * The NODE_OPTIONS the production image sets (the Dockerfile's `ENV ... NODE_OPTIONS="..."`), so the
 * server runs with the heap settings it has on Cloud Run; "" when the Dockerfile sets none.
 */
export async function productionNodeOptions() {
  const dockerfile = await readFile(path.join(ROOT, "Dockerfile"), "utf8").catch(() => "");
  return /^\s*NODE_OPTIONS="([^"]*)"/m.exec(dockerfile)?.[1] ?? "";
}
