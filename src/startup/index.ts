export { nodeVersionProblem, requiredNodeMajor } from "./node-version.js";
export { listenProblem } from "./listen-error.js";
export { budgetStoreProblem } from "./budget-store.js";
