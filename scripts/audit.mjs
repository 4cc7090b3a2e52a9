// Dependency hygiene (issue 18): `npm audit --omit=dev` over what the image ships. Passes when npm reports
// no advisory, or when every advisory is explained below; fails on any other. When the advisory endpoint
// cannot be asked (an offline machine, or a registry mirror that refuses the bulk POST with 405), it says so
// loudly — no vulnerability audit was done — and runs the fallback below instead, which passes unless a
// shipped version is deprecated (AUDIT_REQUIRED=true fails anyway: an audit was required and none ran).
//
// Fallback (README, "Operations"): for every production package in package-lock.json (dev omitted), the
// registry's packument (GET <registry>/<name>, which mirrors answer even when they refuse the audit POSTs)
// says whether that version is deprecated (a failure) and whether a newer release exists in the same
// major version (reported, not a failure). One request per package name, in parallel, once per run.
/* global console, fetch, AbortSignal, URL, performance */
import { execFile } from "node:child_process";
import { readFile } from "node:fs/promises";
import process from "node:process";

/**
 * Advisories (npm audit) or deprecations (fallback) that do not apply, by package name, each with the
 * reason (reviewed when the dependency moves). Empty: the last audit that reached the endpoint was clean.
 */
const explained = {};

/** Packuments fetched at once; a packument can be megabytes. */
const concurrency = 16;
const timeoutMs = 20_000;

function run(command, args) {
  return new Promise((resolve) => {
    execFile(command, args, { maxBuffer: 32 * 1024 * 1024 }, (error, stdout, stderr) =>
      resolve({ stdout, stderr, error }),
    );
  });
}

const { stdout } = await run("npm", ["audit", "--omit=dev", "--json"]);
let report;
try {
  report = JSON.parse(stdout);
} catch {
  report = { message: `unreadable npm audit output: ${stdout.slice(0, 200)}` };
}

if (report.metadata !== undefined) {
  const findings = Object.values(report.vulnerabilities ?? {});
  const unexplained = findings.filter((v) => explained[v.name] === undefined);
  for (const v of findings) {
    const note = explained[v.name] === undefined ? "NOT EXPLAINED" : `explained: ${explained[v.name]}`;
    console.log(`${v.severity} ${v.name} ${v.range ?? ""} (${note})`);
  }
  const counts = report.metadata.dependencies;
  console.log(
    `npm audit --omit=dev: ${findings.length} finding(s), ${unexplained.length} unexplained, ` +
      `${counts?.prod ?? "?"} production dependencies checked`,
  );
  process.exit(unexplained.length === 0 ? 0 : 1);
}

const why = report.message ?? report.error?.summary ?? "no answer";
console.log("=".repeat(100));
console.log(`WARNING: npm audit could not ask the advisory endpoint (${why}).`);
console.log(
  "WARNING: NO VULNERABILITY AUDIT WAS DONE. Known advisories of the shipped packages are unchecked.",
);
console.log(
  "WARNING: running the fallback instead: deprecated and outdated production packages (registry packuments).",
);
console.log("=".repeat(100));

const registry = (await run("npm", ["config", "get", "registry"])).stdout.trim().replace(/\/?$/, "/");

/** Production packages of the lockfile (npm's `--omit=dev` view): name → set of versions. */
async function productionPackages() {
  const lock = JSON.parse(await readFile(new URL("../package-lock.json", import.meta.url), "utf8"));
  const packages = new Map();
  for (const [path, entry] of Object.entries(lock.packages ?? {})) {
    if (path === "" || entry.dev === true || entry.link === true || entry.version === undefined) continue;
    const name = entry.name ?? path.slice(path.lastIndexOf("node_modules/") + "node_modules/".length);
    if (!packages.has(name)) packages.set(name, new Set());
    packages.get(name).add(entry.version);
  }
  return packages;
}

/** A release version as [major, minor, patch], or undefined for a prerelease or anything else. */
function release(version) {
  const m = /^(\d+)\.(\d+)\.(\d+)$/.exec(version);
  return m === null ? undefined : [Number(m[1]), Number(m[2]), Number(m[3])];
}

function newer(a, b) {
  return a[0] - b[0] || a[1] - b[1] || a[2] - b[2];
}

async function packument(name) {
  // Scoped names keep their "@" and encode the "/": @scope%2fname.
  const url = registry + name.replace("/", "%2f");
  const res = await fetch(url, {
    headers: { accept: "application/json" },
    signal: AbortSignal.timeout(timeoutMs),
  });
  if (!res.ok) throw new Error(`GET ${url}: HTTP ${res.status}`);
  return res.json();
}

/** Runs `fn` over `items`, at most `limit` at once. */
async function pool(items, limit, fn) {
  const results = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      results[i] = await fn(items[i]);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}

const started = performance.now();
const packages = await productionPackages();
const names = [...packages.keys()].sort();
const checked = await pool(names, concurrency, async (name) => {
  try {
    return { name, doc: await packument(name) };
  } catch (err) {
    return { name, error: err instanceof Error ? err.message : String(err) };
  }
});

const deprecated = [];
const outdated = [];
const unreachable = [];
for (const { name, doc, error } of checked) {
  if (error !== undefined) {
    unreachable.push(`${name}: ${error}`);
    continue;
  }
  const versions = doc.versions ?? {};
  const releases = Object.keys(versions)
    .map((v) => [v, release(v)])
    .filter(([v, r]) => r !== undefined && versions[v]?.deprecated === undefined);
  for (const version of packages.get(name)) {
    const meta = versions[version];
    if (meta === undefined) {
      unreachable.push(`${name}@${version}: not in the registry's packument`);
      continue;
    }
    if (typeof meta.deprecated === "string" && meta.deprecated !== "") {
      deprecated.push({ name, version, why: meta.deprecated });
    }
    const own = release(version);
    if (own === undefined) continue;
    const latest = releases
      .filter(([, r]) => r[0] === own[0] && newer(r, own) > 0)
      .sort(([, a], [, b]) => newer(b, a))[0];
    if (latest !== undefined) outdated.push(`${name} ${version} → ${latest[0]}`);
  }
}

const unexplained = deprecated.filter((d) => explained[d.name] === undefined);
for (const d of deprecated) {
  const note = explained[d.name] === undefined ? "NOT EXPLAINED" : `explained: ${explained[d.name]}`;
  console.log(`DEPRECATED ${d.name}@${d.version}: ${d.why} (${note})`);
}
for (const line of outdated) console.log(`outdated within its major: ${line}`);
for (const line of unreachable) console.log(`NOT CHECKED ${line}`);
const versionsChecked = [...packages.values()].reduce((n, s) => n + s.size, 0);
console.log(
  `fallback: ${versionsChecked} production package version(s) of ${names.length} name(s) checked against ` +
    `${registry} in ${Math.round(performance.now() - started)} ms: ${deprecated.length} deprecated ` +
    `(${unexplained.length} unexplained), ${outdated.length} with a newer release in the same major, ` +
    `${unreachable.length} not checked`,
);
console.log("WARNING: reminder: NO VULNERABILITY AUDIT WAS DONE (the advisory endpoint could not be asked).");

const failed = unexplained.length > 0 || (unreachable.length > 0 && unreachable.length === names.length);
process.exit(failed || process.env.AUDIT_REQUIRED === "true" ? 1 : 0);
