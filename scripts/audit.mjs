// Dependency hygiene (issue 18): `npm audit --omit=dev` over what the image ships. Passes when npm reports
// no advisory, or when every advisory is explained below; fails on any other. When the advisory endpoint
// cannot be asked (an offline machine, or a registry mirror that refuses the bulk POST with 405), it says so
// loudly and passes, unless AUDIT_REQUIRED=true: an unreachable endpoint is not a finding about our tree.
/* global console */
import { execFile } from "node:child_process";
import process from "node:process";

/**
 * Advisories that do not apply, by package name, each with the reason (reviewed when the dependency moves).
 * Empty: the last audit that reached the endpoint was clean.
 */
const explained = {};

const { stdout } = await new Promise((resolve) => {
  execFile("npm", ["audit", "--omit=dev", "--json"], { maxBuffer: 32 * 1024 * 1024 }, (error, out, err) =>
    resolve({ stdout: out, stderr: err, error }),
  );
});
let report;
try {
  report = JSON.parse(stdout);
} catch {
  report = { message: `unreadable npm audit output: ${stdout.slice(0, 200)}` };
}

if (report.metadata === undefined) {
  const why = report.message ?? report.error?.summary ?? "no answer";
  console.log(`WARNING: npm audit could not ask the advisory endpoint (${why}); the audit was NOT done.`);
  process.exit(process.env.AUDIT_REQUIRED === "true" ? 1 : 0);
}

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
