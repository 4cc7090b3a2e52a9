// Lets a plain `node` run the project's TypeScript sources directly (`npm run dev`, the tests' server
// processes, examples/typescript): Node 24 strips the types (and, with --experimental-transform-types,
// compiles the enums of gen/), but the sources import siblings as "./x.js", which exist only as "./x.ts"
// before a build.
import { registerHooks } from "node:module";

registerHooks({
  resolve(specifier, context, nextResolve) {
    try {
      return nextResolve(specifier, context);
    } catch (err) {
      if (specifier.startsWith(".") && specifier.endsWith(".js")) {
        return nextResolve(`${specifier.slice(0, -3)}.ts`, context);
      }
      throw err;
    }
  },
});
