/**
 * The oldest Node.js major version the server runs on; package.json's `engines.node` says the same
 * (test/startup/node-version.test.ts keeps the two equal). Older versions fail deep inside undici at import
 * time, so this check runs before anything else is loaded.
 */
export const requiredNodeMajor = 24;

/**
 * The one-line refusal for a Node.js older than {@link requiredNodeMajor}, or undefined when `version`
 * (`process.versions.node`, e.g. `"20.20.2"`) is new enough.
 */
export function nodeVersionProblem(version: string): string | undefined {
  const major = Number(/^(\d+)\./.exec(version)?.[1]);
  if (Number.isInteger(major) && major >= requiredNodeMajor) return undefined;
  return (
    `Node.js ${version} is too old: api-key-server needs Node.js ${requiredNodeMajor} or newer ` +
    `(run it with npm start, which uses the Node.js ${requiredNodeMajor} installed by npm ci, or use the container image)`
  );
}
