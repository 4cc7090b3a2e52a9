export {
  AppError,
  errorTable,
  errorDomain,
  toConnectError,
  connectHttpStatusOf,
  requestTooLarge,
  httpStatusOf,
  isAppErrorCode,
  type AppErrorCode,
  type AppErrorOptions,
} from "./app-error.js";
export { scrubSecrets } from "./scrub.js";
export { codeTable, httpStatusOfError } from "./http-status.js";
