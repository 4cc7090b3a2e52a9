/**
 * Imported first by src/main.ts, so it is evaluated before any other module: on an older Node.js the server
 * stops here with one line and exit code 1 instead of a stack trace from inside undici.
 */
import { nodeVersionProblem } from "./node-version.js";

const problem = nodeVersionProblem(process.versions.node);
if (problem !== undefined) {
  process.stderr.write(`api-key-server: ${problem}\n`);
  process.exit(1);
}
