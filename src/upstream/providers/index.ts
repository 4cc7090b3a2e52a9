export { adapterRegistry } from "./registry.js";
export type { AdapterDeps, AdapterFactory } from "./adapter-deps.js";
