// Flat ESLint config: typescript-eslint's recommended rules (syntax only, no type information, so
// `npm run lint` stays fast), relaxed where they fight the codebase's deliberate style.
//
// `npm run lint` then runs scripts/check-imports.mjs: no import cycle between files of lib/ (type-only
// imports count) and folders import only downward, in this order:
//   module wiring (lib/*.module.ts, database.service, decorators, middleware, interceptor)
//   → health, metrics → core (PoolCluster, ClusterRegistry) → cluster (topology, replica set,
//   monitors) → transactions → routing → pool → config → session → declarations, errors.
// A lower module that needs a higher one declares the narrow interface it needs (`LagHost`,
// `ReadHost`, `NodeHost`, `TransactionHost`, …) and the higher one implements it.
import js from '@eslint/js';
import { defineConfig, globalIgnores } from 'eslint/config';
import tseslint from 'typescript-eslint';

const nodeGlobals = {
  process: 'readonly',
  console: 'readonly',
  Buffer: 'readonly',
  URL: 'readonly',
  setTimeout: 'readonly',
  clearTimeout: 'readonly',
  setInterval: 'readonly',
  clearInterval: 'readonly',
  setImmediate: 'readonly',
  AbortController: 'readonly',
  fetch: 'readonly',
};

export default defineConfig(
  globalIgnores(['**/node_modules/', '**/dist/', 'build/', 'coverage/', '.cluster/', 'bench/.tmp/', 'scripts/.tmp/', '**/prisma/generated/']),
  js.configs.recommended,
  tseslint.configs.recommended,
  {
    languageOptions: { ecmaVersion: 2023, sourceType: 'module', globals: nodeGlobals },
    linterOptions: { reportUnusedDisableDirectives: 'error' },
    rules: {
      // `R extends QueryResultRow = any` mirrors pg's own typings; callers narrow it with a row type.
      '@typescript-eslint/no-explicit-any': 'off',
      '@typescript-eslint/no-unused-vars': [
        'error',
        {
          argsIgnorePattern: '^_',
          varsIgnorePattern: '^_',
          caughtErrorsIgnorePattern: '^_',
          destructuredArrayIgnorePattern: '^_',
          ignoreRestSiblings: true,
        },
      ],
      // Defensive initial values (`let failed = false; try { failed = ... } finally { ... }`) are deliberate.
      'no-useless-assignment': 'off',
    },
  },
  {
    // The dashboard page's script runs in the browser on its own (scripts/build-dashboard.mjs
    // inlines it): browser globals, no Node globals, and type imports only.
    files: ['lib/metrics/dashboard/browser.ts'],
    languageOptions: {
      globals: { window: 'readonly', document: 'readonly', getComputedStyle: 'readonly', fetch: 'readonly', setTimeout: 'readonly', console: 'readonly' },
    },
    rules: {
      'no-restricted-globals': ['error', 'process', 'Buffer', 'require', 'module', '__dirname', '__filename', 'setImmediate'],
      'no-restricted-syntax': [
        'error',
        { selector: "ImportDeclaration[importKind!='type']", message: 'The dashboard script runs in the browser on its own: import types only.' },
        { selector: 'ExportNamedDeclaration, ExportDefaultDeclaration, ExportAllDeclaration', message: 'The dashboard script is inlined in the page: it exports nothing.' },
      ],
    },
  },
);
