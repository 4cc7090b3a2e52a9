// The one JSON engine of the REST and OpenAI-compatible surfaces (docs/architecture.md, "JSON in, JSON out").
export { compileJsonPlans } from "./plan.js";
export { readAnswer, readRequest } from "./read.js";
export { toRestJson } from "./write.js";
export { fromAnswerJson, fromRestJson } from "./message.js";
