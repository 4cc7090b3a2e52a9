export {
  createRestHandler,
  type RestHandler,
  type RestHandlerOptions,
  type NodeServerRequest,
  type NodeServerResponse,
} from "./rest-handler.js";
export { recordServices } from "./rest-services.js";
export { toRestJson, fromRestJson } from "./rest-json.js";
export { restErrorBody, restErrorFromConnect, type RestError } from "./rest-error.js";
