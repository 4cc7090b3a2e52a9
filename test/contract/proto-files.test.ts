import { cp, mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { createFileRegistry, fromBinary, fromJson, toBinary } from "@bufbuild/protobuf";
import { FileDescriptorSetSchema } from "@bufbuild/protobuf/wkt";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startApp, type AppHarness } from "../support/app-harness.js";
import { bufBinary, run } from "../support/server-clients.js";
import { repoRoot } from "../support/server-process.js";

// Issue 12, item 5: the contract is usable with nothing but a clone and buf (the third-party protos it
// imports are committed under third_party/proto), and `npm run descriptors` writes a descriptor set that
// protobuf-es and Python load.

/** A child in the repository (or `cwd`) with a minimal environment plus `env`. */
function runIn(file: string, args: readonly string[], cwd = repoRoot, env: Record<string, string> = {}) {
  return run(file, args, 60_000, { cwd, env: { PATH: process.env["PATH"] ?? "", HOME: tmpdir(), ...env } });
}

async function filesUnder(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  return entries
    .filter((e) => e.isFile() && e.name.endsWith(".proto"))
    .map((e) => relative(dir, join(e.parentPath, e.name)))
    .sort();
}

const vendored = join(repoRoot, "third_party/proto");
const temps: string[] = [];
async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "aks-contract-"));
  temps.push(dir);
  return dir;
}
afterAll(async () => {
  await Promise.all(temps.map((dir) => rm(dir, { recursive: true, force: true })));
});

describe("the vendored third-party protos", () => {
  it("are the files the installed npm packages ship (npm run vendor-protos after an upgrade)", async () => {
    const fresh = await tempDir();
    const copy = await runIn(process.execPath, ["scripts/vendor-protos.mjs", fresh]);
    expect(copy).toMatchObject({ code: 0, stderr: "" });
    const names = await filesUnder(fresh);
    expect(await filesUnder(vendored)).toStrictEqual(names);
    for (const name of names) {
      expect(await readFile(join(vendored, name), "utf8"), name).toBe(
        await readFile(join(fresh, name), "utf8"),
      );
    }
  });
});

describe("a fresh clone, with buf and no npm step", () => {
  let clone: string;
  let app: AppHarness;

  beforeAll(async () => {
    // The files a clone has: tracked (or new and not ignored), never .gitignored output such as gen/ inputs
    // made by a script. Only what buf reads is copied.
    clone = await tempDir();
    const listed = await runIn("git", ["ls-files", "--cached", "--others", "--exclude-standard"]);
    expect(listed.code).toBe(0);
    const wanted = listed.stdout
      .split("\n")
      .filter((f) => f === "buf.yaml" || /^(proto|test\/proto|third_party\/proto)\/.*\.proto$/.test(f));
    for (const file of wanted) {
      await cp(join(repoRoot, file), join(clone, file), { recursive: true });
    }
    expect(wanted).toContain("third_party/proto/google/api/annotations.proto");
    app = await startApp();
  });
  afterAll(async () => {
    await app.close();
  });

  it("buf build compiles the whole workspace", async () => {
    expect(await runIn(bufBinary, ["build"], clone)).toMatchObject({ code: 0, stderr: "" });
  });

  it("buf curl with the clone as its schema calls a chat RPC in protobuf's canonical JSON", async () => {
    const res = await runIn(bufBinary, [
      "curl",
      "--schema",
      clone,
      "--protocol",
      "grpc",
      "--http2-prior-knowledge",
      "-H",
      `authorization: Bearer ${await app.token()}`,
      "-d",
      '{"product":"product-dev","model":"echo-1","messages":[{"role":"user","text":"hi from buf"}]}',
      `${app.url}/apikeyserver.v1.ChatService/CreateChatCompletion`,
    ]);
    expect(res.stderr).toBe("");
    expect(res.code).toBe(0);
    const answer = JSON.parse(res.stdout) as { choices: { message: { content: string } }[] };
    expect(answer.choices[0]?.message.content).toBe("hi from buf");
  });
});

describe("npm run descriptors", () => {
  let file: string;

  beforeAll(async () => {
    // The script as `npm run descriptors` runs it: through sh, with node_modules/.bin on the PATH.
    const pkg = JSON.parse(await readFile(join(repoRoot, "package.json"), "utf8")) as {
      scripts: Record<string, string>;
    };
    const res = await runIn("/bin/sh", ["-c", pkg.scripts["descriptors"] ?? "false"], repoRoot, {
      PATH: `${join(repoRoot, "node_modules/.bin")}:${process.env["PATH"] ?? ""}`,
    });
    expect(res).toMatchObject({ code: 0, stderr: "" });
    file = join(repoRoot, "dist/apikeyserver.binpb");
  });

  it("loads into a protobuf-es registry with every import, and the registry reads a request", async () => {
    const set = fromBinary(FileDescriptorSetSchema, await readFile(file));
    expect(set.file.map((f) => f.name)).toEqual(
      expect.arrayContaining([
        "apikeyserver/v1/chat.proto",
        "apikeyserver/v1/json_options.proto",
        "google/api/annotations.proto",
        "google/protobuf/struct.proto",
        "grpc/health/v1/health.proto",
      ]),
    );
    const registry = createFileRegistry(set);
    const service = registry.getService("apikeyserver.v1.ChatService");
    expect(service?.methods.map((m) => m.name)).toStrictEqual([
      "CreateChatCompletion",
      "StreamChatCompletion",
      "ListModels",
    ]);
    const input = registry.getMessage("apikeyserver.v1.ChatCompletionRequest");
    if (input === undefined) throw new Error("no ChatCompletionRequest in the set");
    const bytes = toBinary(input, fromJson(input, { messages: [{ role: "user", text: "hi" }] }));
    expect(bytes.length).toBeGreaterThan(0);
  });

  it("loads in Python (descriptor_pb2.FileDescriptorSet into a pool), as grpcurl -protoset does", async () => {
    const script = `
import sys
from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory
fds = descriptor_pb2.FileDescriptorSet()
fds.ParseFromString(open(sys.argv[1], "rb").read())
pool = descriptor_pool.DescriptorPool()
for f in fds.file:
    pool.Add(f)
service = pool.FindServiceByName("apikeyserver.v1.ChatService")
desc = pool.FindMessageTypeByName("apikeyserver.v1.ChatCompletionRequest")
cls = message_factory.MessageFactory(pool).GetPrototype(desc)
req = json_format.Parse('{"messages": [{"role": "user", "text": "hi"}], "stopSequence": "END"}', cls())
print(" ".join(m.name for m in service.methods), req.messages[0].WhichOneof("content"), req.WhichOneof("stop"))
`;
    const res = await runIn("/usr/bin/python3", ["-c", script, file]);
    expect(res.stderr).toBe("");
    expect(res.stdout).toBe("CreateChatCompletion StreamChatCompletion ListModels text stop_sequence\n");
  });
});
