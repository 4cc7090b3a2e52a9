export { createRestHandler, type RestHandler, type RestHandlerOptions } from "./rest-handler.js";
export { recordServices } from "./rest-services.js";
export { toRestJson, fromRestJson, fromProviderJson } from "./rest-json.js";
export { restErrorBody, restErrorFromConnect, type RestError } from "./rest-error.js";
export { createOpenAiEdge, type OpenAiEdgeOptions } from "./openai-handler.js";
export { createJsonChat, type JsonChat, type JsonChatRequest } from "./chat-json.js";
