import { readFile } from "node:fs/promises";
import { parseArgs } from "node:util";
import { allowedJwtAlgorithms } from "../auth/index.js";
import { keygen, sign, token, type JwtAlgorithm } from "./commands.js";

/** Environment variable the `sign` command reads the HMAC secret from when no --secret-file is given. */
export const hmacSecretEnv = "API_KEY_SERVER_HMAC_SECRET";

export interface CliIo {
  readonly stdout: (line: string) => void;
  readonly stderr: (line: string) => void;
  readonly env: Readonly<Record<string, string | undefined>>;
}

const usage = `Usage: npm run cli -- <command> [options]

  keygen [--kid ID] [--alg ES256|RS256|PS256|EdDSA] [--config-dir config] [--force]
      Writes a development key pair: config/dev_jwt_private_key.json (git-ignored) and adds the public
      key to config/jwt_public_keys.json.
  token --product NAME [--product NAME ...] --sub NAME [--ttl SECONDS] [--iss ISSUER] [--aud AUDIENCE]
        [--config-dir config]
      Prints a JWT signed with the development key (--product '*' for every product).
  sign --key-id ID [--secret-file FILE] --method METHOD --path PATH[?QUERY] [--body TEXT | --body-file FILE]
       [--timestamp UNIX_SECONDS] [--nonce VALUE]
      Prints the HMAC headers as curl arguments. The secret comes from --secret-file or ${hmacSecretEnv}.`;

/** Runs one CLI command; resolves the process exit code. Errors are one line on stderr, never a secret. */
export async function runCli(argv: readonly string[], io: CliIo): Promise<number> {
  const [command, ...rest] = argv;
  try {
    switch (command) {
      case "keygen": {
        const { values } = parseArgs({
          args: rest,
          options: {
            kid: { type: "string" },
            alg: { type: "string" },
            "config-dir": { type: "string", default: "config" },
            force: { type: "boolean", default: false },
          },
          strict: true,
        });
        if (values.alg !== undefined && !(allowedJwtAlgorithms as readonly string[]).includes(values.alg)) {
          throw new Error(`--alg must be one of ${allowedJwtAlgorithms.join(", ")}`);
        }
        const result = await keygen({
          configDir: values["config-dir"],
          force: values.force,
          ...(values.kid !== undefined ? { kid: values.kid } : {}),
          ...(values.alg !== undefined ? { alg: values.alg as JwtAlgorithm } : {}),
        });
        io.stdout(`kid ${result.kid} (${result.alg})`);
        io.stdout(`private key: ${result.privateKeyPath} (development only, keep it out of git)`);
        io.stdout(`public keys: ${result.publicKeysPath}`);
        return 0;
      }
      case "token": {
        const { values } = parseArgs({
          args: rest,
          options: {
            product: { type: "string", multiple: true, default: [] },
            sub: { type: "string", default: "" },
            ttl: { type: "string" },
            iss: { type: "string" },
            aud: { type: "string" },
            "config-dir": { type: "string", default: "config" },
          },
          strict: true,
        });
        io.stdout(
          await token({
            configDir: values["config-dir"],
            products: values.product,
            sub: values.sub,
            ...(values.ttl !== undefined ? { ttlSeconds: toInteger(values.ttl, "--ttl") } : {}),
            ...(values.iss !== undefined ? { issuer: values.iss } : {}),
            ...(values.aud !== undefined ? { audience: values.aud } : {}),
          }),
        );
        return 0;
      }
      case "sign": {
        const { values } = parseArgs({
          args: rest,
          options: {
            "key-id": { type: "string" },
            "secret-file": { type: "string" },
            method: { type: "string" },
            path: { type: "string" },
            body: { type: "string" },
            "body-file": { type: "string" },
            timestamp: { type: "string" },
            nonce: { type: "string" },
          },
          strict: true,
        });
        const keyId = required(values["key-id"], "--key-id");
        const method = required(values.method, "--method");
        const urlPath = required(values.path, "--path");
        if (!urlPath.startsWith("/")) throw new Error("--path must start with /");
        if (values.body !== undefined && values["body-file"] !== undefined) {
          throw new Error("give --body or --body-file, not both");
        }
        const secret =
          values["secret-file"] !== undefined
            ? (await readFile(values["secret-file"], "utf8")).replace(/\r?\n$/, "")
            : io.env[hmacSecretEnv];
        if (secret === undefined || secret === "") {
          throw new Error(`no HMAC secret: pass --secret-file or set ${hmacSecretEnv}`);
        }
        const body =
          values["body-file"] !== undefined ? await readFile(values["body-file"]) : (values.body ?? "");
        io.stdout(
          sign({
            keyId,
            secret,
            method,
            path: urlPath,
            body,
            ...(values.timestamp !== undefined
              ? { timestamp: toInteger(values.timestamp, "--timestamp") }
              : {}),
            ...(values.nonce !== undefined ? { nonce: values.nonce } : {}),
          }),
        );
        return 0;
      }
      case undefined:
      case "help":
      case "--help":
        io.stdout(usage);
        return command === undefined ? 2 : 0;
      default:
        io.stderr(`unknown command ${JSON.stringify(command)}\n\n${usage}`);
        return 2;
    }
  } catch (err) {
    io.stderr(`error: ${err instanceof Error ? err.message : String(err)}`);
    return 1;
  }
}

function required(value: string | undefined, flag: string): string {
  if (value === undefined || value === "") throw new Error(`${flag} is required`);
  return value;
}

function toInteger(value: string, flag: string): number {
  if (!/^[0-9]+$/.test(value)) throw new Error(`${flag} must be a whole number`);
  return Number(value);
}
