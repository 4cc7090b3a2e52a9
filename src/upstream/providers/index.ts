export { adapterRegistry, type AdapterDeps, type AdapterFactory } from "./registry.js";
