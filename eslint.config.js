// @ts-check
import js from "@eslint/js";
import tseslint from "typescript-eslint";

export default tseslint.config(
  { ignores: ["dist/", "gen/", "node_modules/", "coverage/", "third_party/", ".dependency-cruiser.cjs"] },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      "@typescript-eslint/no-floating-promises": "error",
      "@typescript-eslint/no-misused-promises": "error",
      "@typescript-eslint/consistent-type-imports": "error",
      "@typescript-eslint/no-unused-vars": ["error", { argsIgnorePattern: "^_", varsIgnorePattern: "^_" }],
    },
  },
  {
    files: ["**/*.js", "**/*.mjs"],
    ...tseslint.configs.disableTypeChecked,
  },
  {
    // The example web page runs in a browser; its little file server on Node.
    files: ["examples/web/app.js"],
    languageOptions: {
      globals: Object.fromEntries(
        ["document", "location", "fetch", "Option", "AbortController", "TextDecoder"].map((g) => [
          g,
          "readonly",
        ]),
      ),
    },
  },
  {
    files: ["examples/web/serve.mjs"],
    languageOptions: {
      globals: Object.fromEntries(["process", "URL", "console"].map((g) => [g, "readonly"])),
    },
  },
);
