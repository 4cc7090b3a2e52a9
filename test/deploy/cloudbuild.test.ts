import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { parse } from "yaml";
import { gcloudFlagProblems, loadGcloudReference } from "../support/gcloud-reference.js";
import { repoRoot } from "../support/server-process.js";

/**
 * Issue 16.1: cloudbuild.yaml, read as Cloud Build reads it. Every requirement of a deploy that cannot go
 * quietly wrong is asserted here, so removing one fails CI.
 */

interface Step {
  id?: string;
  name: string;
  entrypoint?: string;
  args?: string[];
}
interface CloudBuild {
  substitutions: Record<string, string>;
  steps: Step[];
  images?: string[];
  options?: Record<string, unknown>;
}

const text = await readFile(join(repoRoot, "cloudbuild.yaml"), "utf8");
const build = parse(text) as CloudBuild;
const step = (id: string): Step => {
  const found = build.steps.find((s) => s.id === id);
  if (found === undefined) throw new Error(`cloudbuild.yaml has no step ${id}`);
  return found;
};
const deployArgs = step("deploy").args ?? [];
const flag = (name: string): string | undefined =>
  deployArgs.find((a) => a === name || a.startsWith(`${name}=`))?.slice(name.length + 1);

/** Cloud Build's own substitutions (always set, or set by triggers); everything else must be declared. */
const builtIn = new Set(["PROJECT_ID", "BUILD_ID", "PROJECT_NUMBER", "LOCATION"]);

describe("cloudbuild.yaml", () => {
  it("declares every substitution it uses, in steps and in comments", () => {
    const declared = new Set(Object.keys(build.substitutions));
    for (const name of declared) expect(name).toMatch(/^_[A-Z0-9_]+$/);
    // $X, ${X} anywhere, and any _NAME mentioned in a comment (a comment naming a key that does not exist
    // sends an operator to set a substitution the build then rejects).
    const code = text
      .split("\n")
      .filter((line) => !line.trim().startsWith("#"))
      .join("\n");
    const used = [...code.matchAll(/\$\{?([A-Z_][A-Z0-9_]*)\}?/g)].map((m) => m[1] ?? "");
    const commented = text
      .split("\n")
      .filter((line) => line.trim().startsWith("#"))
      .flatMap((line) => [...line.matchAll(/(?<![A-Za-z0-9$])(_[A-Z][A-Z0-9_]*)/g)].map((m) => m[1] ?? ""));
    const unknown = [...used, ...commented].filter((name) => !declared.has(name) && !builtIn.has(name));
    expect(unknown).toEqual([]);
    // Every declared substitution is used by a step (an unused one is a leftover that misleads).
    const body = JSON.stringify(build.steps);
    for (const name of declared) expect(body).toContain(name);
  });

  it("uses only substitutions that exist on manual builds too ($BUILD_ID, not $COMMIT_SHA)", () => {
    for (const name of ["COMMIT_SHA", "SHORT_SHA", "BRANCH_NAME", "TAG_NAME", "REVISION_ID", "REPO_NAME"]) {
      expect(JSON.stringify(build.steps)).not.toContain(name);
    }
  });

  it("builds one Artifact Registry image, pushes it once, and deploys that image", () => {
    const image = "${_AR_LOCATION}-docker.pkg.dev/$PROJECT_ID/${_AR_REPOSITORY}/${_SERVICE}:$BUILD_ID";
    expect(step("build").args).toContain(`--tag=${image}`);
    const pushes = build.steps.filter((s) => (s.args ?? [])[0] === "push");
    expect(pushes).toHaveLength(1);
    expect(pushes[0]?.args).toEqual(["push", image]);
    // `images:` would push again, after the deploy.
    expect(build.images).toBeUndefined();
    expect(flag("--image")).toBe(image);
    // Container Registry is shut down: no gcr.io image of ours (builder images are Google's own).
    expect(JSON.stringify(build.steps)).not.toMatch(/gcr\.io\/\$PROJECT_ID/);
    // The deploy runs after the push.
    const order = build.steps.map((s) => s.id);
    expect(order.indexOf("push")).toBeLessThan(order.indexOf("deploy"));
    expect(order.indexOf("test")).toBeLessThan(order.indexOf("build"));
  });

  it("deploys with IAM, end-to-end HTTP/2, a 300 s timeout and a runtime service account", () => {
    expect(deployArgs.slice(0, 3)).toEqual(["run", "deploy", "${_SERVICE}"]);
    expect(deployArgs).toContain("--no-allow-unauthenticated");
    expect(deployArgs).toContain("--use-http2");
    expect(flag("--timeout")).toBe("300");
    expect(flag("--region")).toBe("${_REGION}");
    expect(flag("--service-account")).toBe("${_SERVICE_ACCOUNT}@$PROJECT_ID.iam.gserviceaccount.com");
  });

  it("has a gRPC startup probe on the serving port, long enough for the start-up deadline", () => {
    const probe = Object.fromEntries(
      (flag("--startup-probe") ?? "").split(",").map((pair) => pair.split("=") as [string, string]),
    );
    // gRPC health answers SERVING only once secrets are loaded (a TCP or HTTP/1 probe cannot tell, or cannot
    // speak to an --use-http2 service); no grpc.service = the whole server.
    expect(probe["grpc.port"]).toBe("8080");
    expect(Object.keys(probe).filter((k) => k.startsWith("httpGet") || k.startsWith("tcpSocket"))).toEqual(
      [],
    );
    const budget = Number(probe["periodSeconds"]) * Number(probe["failureThreshold"]);
    // API_KEY_SERVER_SECRET_STARTUP_DEADLINE_SECONDS defaults to 60.
    expect(budget).toBeGreaterThan(60);
    expect(Number(probe["timeoutSeconds"])).toBeLessThanOrEqual(Number(probe["periodSeconds"]));
  });

  it("sets the four runbook variables with --update-env-vars, never --set-env-vars", () => {
    expect(deployArgs.some((a) => a.startsWith("--set-env-vars"))).toBe(false);
    const vars = Object.fromEntries(
      (flag("--update-env-vars") ?? "").split(",").map((pair) => pair.split("=") as [string, string]),
    );
    expect(vars).toStrictEqual({
      USE_SECRET_MANAGER: "true",
      API_KEY_SERVER_GCP_PROJECT_ID: "$PROJECT_ID",
      API_KEY_SERVER_MAX_TOKENS: "${_MAX_TOKENS}",
      API_KEY_SERVER_REQUEST_TIMEOUT_SECONDS: "${_REQUEST_TIMEOUT_SECONDS}",
    });
  });

  it("uses only gcloud flags of the pinned reference (docs/reference/gcloud-flags.json)", async () => {
    const reference = await loadGcloudReference();
    expect(gcloudFlagProblems(["gcloud", ...deployArgs], reference)).toEqual([]);
    // The check itself catches a flag that does not exist.
    expect(gcloudFlagProblems(["gcloud", "run", "deploy", "x", "--startup-probes=1"], reference)).toEqual([
      "gcloud run deploy: unknown flag --startup-probes (not in docs/reference/gcloud-flags.json)",
    ]);
  });
});
