// Compiles the dashboard page's browser script (lib/metrics/dashboard/browser.ts) into the string
// the server serves (lib/metrics/dashboard/browser.compiled.ts, one string literal): types
// stripped, comments dropped, wrapped in a strict function so nothing leaks into the page's
// globals. The compiled string is committed, so the published package, `npm run demo` and the
// test runs serve it as they import any other module.
//
//   node scripts/build-dashboard.mjs          (npm run build:dashboard) writes the file
//   node scripts/build-dashboard.mjs --check  exits 1 while the file is not browser.ts compiled
//
// Type checking is not done here: `npm run typecheck` checks browser.ts against the DOM
// (tsconfig.dashboard.json).
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const sourceFile = 'lib/metrics/dashboard/browser.ts';
const targetFile = 'lib/metrics/dashboard/browser.compiled.ts';

/** The script the page embeds, compiled from the TypeScript source. */
export function compileDashboardScript(source) {
  const { outputText, diagnostics } = ts.transpileModule(source, {
    fileName: sourceFile,
    reportDiagnostics: true,
    compilerOptions: { target: ts.ScriptTarget.ES2020, module: ts.ModuleKind.ESNext, removeComments: true, isolatedModules: true },
  });
  if (diagnostics?.length) {
    const text = diagnostics.map((d) => ts.flattenDiagnosticMessageText(d.messageText, '\n')).join('\n');
    throw new Error(`Cannot compile ${sourceFile}: ${text}`);
  }
  // Type-only imports leave `export {};`; the page runs the script as a classic one.
  const body = outputText.replace(/^export \{\};\s*$/m, '').trim();
  const leftover = /^\s*(import|export)\b.*$/m.exec(body);
  if (leftover) throw new Error(`Cannot embed ${sourceFile} in the page because it imports or exports a value (${leftover[0].trim()}): the script must stand alone, importing types only.`);
  if (/<\/script|<!--/i.test(body)) throw new Error(`Cannot embed ${sourceFile} in the page because its compiled form contains "</script" or "<!--", which would end the page's script element.`);
  return `(function () {\n'use strict';\n${body}\n})();\n`;
}

/**
 * The TypeScript module that carries the compiled script, as one JSON string literal: a build
 * artifact, read from browser.ts, not line by line here.
 */
export function renderScriptModule(script) {
  return `// Generated from browser.ts by \`npm run build:dashboard\` (scripts/build-dashboard.mjs): do not edit.
// The dashboard page's script, served inline by dashboard.page.ts.

export const DASHBOARD_SCRIPT: string = ${JSON.stringify(script)};
`;
}

const expected = renderScriptModule(compileDashboardScript(readFileSync(path.join(root, sourceFile), 'utf8')));
const target = path.join(root, targetFile);
if (process.argv.includes('--check')) {
  let current = '';
  try {
    current = readFileSync(target, 'utf8');
  } catch {
    // a missing file is stale
  }
  if (current !== expected) {
    console.error(`build-dashboard: ${targetFile} is not ${sourceFile} compiled. Please run npm run build:dashboard and commit the result.`);
    process.exit(1);
  }
  console.log(`build-dashboard: ${targetFile} is current`);
} else {
  writeFileSync(target, expected);
  console.log(`build-dashboard: wrote ${targetFile}`);
}
