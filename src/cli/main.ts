#!/usr/bin/env node
// Entry point of `npm run cli -- ...` (node dist/src/cli/main.js). All logic is in run.ts, tested in process.
import { runCli } from "./run.js";

process.exitCode = await runCli(process.argv.slice(2), {
  stdout: (line) => process.stdout.write(`${line}\n`),
  stderr: (line) => process.stderr.write(`${line}\n`),
  env: process.env,
});
