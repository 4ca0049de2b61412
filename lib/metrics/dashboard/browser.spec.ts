import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Script } from 'node:vm';
import { DASHBOARD_SCRIPT } from './browser.compiled.js';

// The dashboard page serves browser.compiled.ts, the compiled form of browser.ts: it must be
// current (scripts/build-dashboard.mjs --check) and a classic script that defines no global.

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');

describe('the dashboard script', () => {
  it('is browser.ts compiled as it stands (npm run build:dashboard)', () => {
    expect(() => execFileSync(process.execPath, ['scripts/build-dashboard.mjs', '--check'], { cwd: root, stdio: 'pipe', timeout: 60_000 })).not.toThrow();
  });

  it('parses as a classic script, wrapped so that it defines no global', () => {
    expect(() => new Script(DASHBOARD_SCRIPT, { filename: 'dashboard.js' })).not.toThrow();
    expect(DASHBOARD_SCRIPT.startsWith("(function () {\n'use strict';\n")).toBe(true);
    expect(DASHBOARD_SCRIPT.trimEnd().endsWith('})();')).toBe(true);
    expect(DASHBOARD_SCRIPT).not.toMatch(/<\/script|<!--/i);
  });
});
