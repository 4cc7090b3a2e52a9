/**
 * A reader for the repository's Dockerfile, enough for test/deploy/runtime-stage.test.ts to reproduce its
 * stages without a Docker engine: instructions with their continuation lines joined, grouped by stage.
 */

export interface Instruction {
  /** Upper-case keyword: FROM, WORKDIR, COPY, RUN, ENV, USER, EXPOSE, CMD, ... */
  readonly keyword: string;
  /** Everything after the keyword, continuation lines joined with a space. */
  readonly args: string;
}

export interface Stage {
  readonly image: string;
  /** The `AS name`, if any. */
  readonly name: string | undefined;
  /** The instructions after FROM. */
  readonly instructions: readonly Instruction[];
}

export function parseDockerfile(text: string): Stage[] {
  const instructions: Instruction[] = [];
  let pending = "";
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (pending === "" && (line === "" || line.startsWith("#"))) continue;
    if (line.endsWith("\\")) {
      pending += `${line.slice(0, -1).trim()} `;
      continue;
    }
    const whole = (pending + line).trim();
    pending = "";
    const match = /^(\S+)\s+(.*)$/.exec(whole);
    if (match === null) throw new Error(`Dockerfile: cannot read ${JSON.stringify(whole)}`);
    instructions.push({ keyword: (match[1] ?? "").toUpperCase(), args: match[2] ?? "" });
  }
  const stages: { image: string; name: string | undefined; instructions: Instruction[] }[] = [];
  for (const instruction of instructions) {
    if (instruction.keyword === "FROM") {
      const [image = "", as, name] = instruction.args.split(/\s+/);
      stages.push({ image, name: as?.toUpperCase() === "AS" ? name : undefined, instructions: [] });
    } else {
      const stage = stages.at(-1);
      if (stage === undefined) throw new Error(`Dockerfile: ${instruction.keyword} before FROM`);
      stage.instructions.push(instruction);
    }
  }
  return stages;
}

/** `ENV A=1 B="two words"` → { A: "1", B: "two words" }. */
export function parseEnv(args: string): Record<string, string> {
  const env: Record<string, string> = {};
  const pattern = /([A-Za-z_][A-Za-z0-9_]*)=("([^"]*)"|(\S*))/g;
  let rest = args;
  for (const match of args.matchAll(pattern)) {
    env[match[1] ?? ""] = match[3] ?? match[4] ?? "";
    rest = rest.replace(match[0], "");
  }
  if (rest.trim() !== "") throw new Error(`Dockerfile: ENV ${args}: only KEY=VALUE pairs are understood`);
  return env;
}

/** `COPY [--from=x] [--chown=...] a b dest` → its flags, sources and destination. */
export function parseCopy(args: string): {
  from: string | undefined;
  flags: string[];
  sources: string[];
  dest: string;
} {
  const words = args.split(/\s+/);
  const flags = words.filter((w) => w.startsWith("--"));
  const paths = words.filter((w) => !w.startsWith("--"));
  const dest = paths.pop();
  if (dest === undefined || paths.length === 0)
    throw new Error(`Dockerfile: COPY ${args}: needs a source and a destination`);
  const from = flags.find((f) => f.startsWith("--from="))?.slice("--from=".length);
  return { from, flags, sources: paths, dest };
}
