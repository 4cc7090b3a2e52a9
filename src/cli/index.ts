export { runCli, hmacSecretEnv, type CliIo } from "./run.js";
export { keygen, token, sign, devPrivateKeyFile, publicKeysFile } from "./commands.js";
