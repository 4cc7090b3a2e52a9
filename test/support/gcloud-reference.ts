import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { repoRoot } from "./server-process.js";

/**
 * docs/reference/gcloud-flags.json: the flags each gcloud command of cloudbuild.yaml and the runbook may use,
 * pinned from the SDK reference on the date it names.
 */
export interface GcloudReference {
  readonly global: readonly string[];
  readonly commands: Readonly<Record<string, { readonly url: string; readonly flags: readonly string[] }>>;
}

export async function loadGcloudReference(): Promise<GcloudReference> {
  return JSON.parse(
    await readFile(join(repoRoot, "docs/reference/gcloud-flags.json"), "utf8"),
  ) as GcloudReference;
}

/**
 * What is wrong with one gcloud command line (already split into words, starting with "gcloud"): an unknown
 * command group, or a flag its reference does not list. Empty when it is fine.
 */
export function gcloudFlagProblems(words: readonly string[], reference: GcloudReference): string[] {
  const rest = words.slice(1);
  // The longest known command that the leading non-flag words start with.
  const leading = rest.filter((w, i) => rest.slice(0, i + 1).every((x) => !x.startsWith("-")));
  let command: string | undefined;
  for (let n = leading.length; n > 0 && command === undefined; n--) {
    const candidate = leading.slice(0, n).join(" ");
    if (Object.hasOwn(reference.commands, candidate)) command = candidate;
  }
  if (command === undefined)
    return [`gcloud ${leading.join(" ")}: not a command of docs/reference/gcloud-flags.json`];
  const allowed = new Set([...reference.global, ...(reference.commands[command]?.flags ?? [])]);
  return rest
    .filter((w) => w.startsWith("--"))
    .map((w) => w.split("=")[0] ?? w)
    .filter((f) => !allowed.has(f))
    .map((f) => `gcloud ${command}: unknown flag ${f} (not in docs/reference/gcloud-flags.json)`);
}
