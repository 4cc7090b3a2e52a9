import { readFile } from "node:fs/promises";
import { parseArgs, type ParseArgsOptionsConfig } from "node:util";
import { allowedJwtAlgorithms } from "../auth/index.js";
import {
  devPrivateKeyFile,
  generateKeyPair,
  keygen,
  publicKeysFile,
  sign,
  token,
  type JwtAlgorithm,
} from "./commands.js";

/** Environment variable the `sign` command reads the HMAC secret from when no --secret-file is given. */
export const hmacSecretEnv = "API_KEY_SERVER_HMAC_SECRET";

export interface CliIo {
  readonly stdout: (line: string) => void;
  readonly stderr: (line: string) => void;
  readonly env: Readonly<Record<string, string | undefined>>;
}

/** Per-command usage: `npm run cli -- <command> --help` prints it; a usage error names it. */
const commandUsage = {
  keygen: `Usage: npm run cli -- keygen [--kid ID] [--alg ES256|RS256|PS256|EdDSA] [--config-dir DIR] [--force] [--stdout]

  Writes a development key pair: DIR/dev_jwt_private_key.json (git-ignored) and adds the public key to
  DIR/jwt_public_keys.json (DIR defaults to config). --stdout writes no file and prints both documents
  as one JSON object instead (for a read-only folder, such as the container image's).`,
  token: `Usage: npm run cli -- token --product NAME [--product NAME ...] --sub NAME [--ttl SECONDS]
                            [--iss ISSUER] [--aud AUDIENCE] [--config-dir DIR]

  Prints a JWT signed with DIR/dev_jwt_private_key.json (from keygen); --product '*' grants every product.`,
  sign: `Usage: npm run cli -- sign --key-id ID [--secret-file FILE] --method METHOD --path PATH[?QUERY]
                           [--body TEXT | --body-file FILE] [--timestamp UNIX_SECONDS] [--nonce VALUE]

  Prints the HMAC headers as curl arguments. The secret comes from --secret-file or ${hmacSecretEnv}.`,
} as const;
type Command = keyof typeof commandUsage;

const usage = `Usage: npm run cli -- <command> [options]

Commands:
  keygen   write (or print) a development JWT key pair
  token    print a JWT signed with the development key
  sign     print the HMAC headers of one request

Run npm run cli -- <command> --help for a command's options.`;

/** A usage mistake: the message is followed by where to read the command's usage. */
class UsageError extends Error {}

const isCommand = (name: string | undefined): name is Command =>
  name !== undefined && Object.hasOwn(commandUsage, name);

/**
 * parseArgs with every command's `--help`, and its errors turned into one line naming the command's help.
 */
function parse<T extends ParseArgsOptionsConfig>(
  command: Command,
  args: readonly string[],
  options: T,
): {
  help: boolean;
  values: ReturnType<typeof parseArgs<{ options: T; strict: true; args: string[] }>>["values"];
} {
  if (args.includes("--help") || args.includes("-h")) return { help: true, values: {} as never };
  try {
    const { values } = parseArgs({ args: [...args], options, strict: true });
    return { help: false, values };
  } catch (err) {
    // node:util's messages are long and suggest `--` tricks; say what was wrong and where the options are.
    const code = (err as { code?: unknown }).code;
    const option = /'(-[^' ]*)[^']*'/.exec((err as Error).message)?.[1];
    const what =
      code === "ERR_PARSE_ARGS_UNKNOWN_OPTION"
        ? `unknown option ${option ?? ""}`.trim()
        : code === "ERR_PARSE_ARGS_INVALID_OPTION_VALUE"
          ? `option ${option ?? ""} needs a value`.replace("  ", " ")
          : code === "ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL"
            ? "unexpected argument"
            : (err as Error).message;
    throw new UsageError(`${command}: ${what}`);
  }
}

/** Runs one CLI command; resolves the process exit code. Errors are one line on stderr, never a secret. */
export async function runCli(argv: readonly string[], io: CliIo): Promise<number> {
  const [command, ...rest] = argv;
  try {
    switch (command) {
      case "keygen": {
        const { help, values } = parse(command, rest, {
          kid: { type: "string" },
          alg: { type: "string" },
          "config-dir": { type: "string", default: "config" },
          force: { type: "boolean", default: false },
          stdout: { type: "boolean", default: false },
        });
        if (help) return printHelp(io, command);
        if (values.alg !== undefined && !(allowedJwtAlgorithms as readonly string[]).includes(values.alg)) {
          throw new Error(`--alg must be one of ${allowedJwtAlgorithms.join(", ")}`);
        }
        const common = {
          ...(values.kid !== undefined ? { kid: values.kid } : {}),
          ...(values.alg !== undefined ? { alg: values.alg as JwtAlgorithm } : {}),
        };
        if (values.stdout === true) {
          const pair = await generateKeyPair(common);
          io.stdout(
            JSON.stringify(
              { [devPrivateKeyFile]: pair.privateJwk, [publicKeysFile]: pair.publicJwks },
              null,
              2,
            ),
          );
          return 0;
        }
        const result = await keygen({
          configDir: values["config-dir"] ?? "config",
          force: values.force === true,
          ...common,
        });
        io.stdout(`kid ${result.kid} (${result.alg})`);
        io.stdout(`private key: ${result.privateKeyPath} (development only, keep it out of git)`);
        io.stdout(`public keys: ${result.publicKeysPath}`);
        return 0;
      }
      case "token": {
        const { help, values } = parse(command, rest, {
          product: { type: "string", multiple: true, default: [] },
          sub: { type: "string", default: "" },
          ttl: { type: "string" },
          iss: { type: "string" },
          aud: { type: "string" },
          "config-dir": { type: "string", default: "config" },
        });
        if (help) return printHelp(io, command);
        io.stdout(
          await token({
            configDir: values["config-dir"] ?? "config",
            products: values.product ?? [],
            sub: values.sub ?? "",
            ...(values.ttl !== undefined ? { ttlSeconds: toInteger(values.ttl, "--ttl") } : {}),
            ...(values.iss !== undefined ? { issuer: values.iss } : {}),
            ...(values.aud !== undefined ? { audience: values.aud } : {}),
          }),
        );
        return 0;
      }
      case "sign": {
        const { help, values } = parse(command, rest, {
          "key-id": { type: "string" },
          "secret-file": { type: "string" },
          method: { type: "string" },
          path: { type: "string" },
          body: { type: "string" },
          "body-file": { type: "string" },
          timestamp: { type: "string" },
          nonce: { type: "string" },
        });
        if (help) return printHelp(io, command);
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
        io.stderr(usage);
        return 2;
      case "help":
      case "--help":
      case "-h": {
        const [topic] = rest;
        io.stdout(isCommand(topic) ? commandUsage[topic] : usage);
        return 0;
      }
      default:
        io.stderr(
          `error: unknown command ${JSON.stringify(command)}; run npm run cli -- --help for the commands`,
        );
        return 2;
    }
  } catch (err) {
    if (err instanceof UsageError) {
      io.stderr(
        `error: ${err.message}; run npm run cli -- ${isCommand(command) ? `${command} ` : ""}--help for the options`,
      );
      return 2;
    }
    io.stderr(`error: ${err instanceof Error ? err.message : String(err)}`);
    return 1;
  }
}

function printHelp(io: CliIo, command: Command): number {
  io.stdout(commandUsage[command]);
  return 0;
}

function required(value: string | undefined, flag: string): string {
  if (value === undefined || value === "") throw new Error(`${flag} is required`);
  return value;
}

function toInteger(value: string, flag: string): number {
  if (!/^[0-9]+$/.test(value)) throw new Error(`${flag} must be a whole number`);
  return Number(value);
}
