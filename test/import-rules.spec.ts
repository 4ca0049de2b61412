import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

// `npm run lint` runs scripts/check-imports.mjs over lib/: no import cycle between files (type-only
// imports count) and no folder importing a folder above it. These fixtures prove that it fails on
// each, and passes on imports that run downward.

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const check = (dir?: string) => {
  const args = [path.join(root, 'scripts/check-imports.mjs'), ...(dir === undefined ? [] : [path.join('test/fixtures/import-rules', dir)])];
  const run = spawnSync(process.execPath, args, { cwd: root, encoding: 'utf8', timeout: 60_000 });
  return { status: run.status, stderr: run.stderr };
};

describe('the import rules of lib/ (scripts/check-imports.mjs)', () => {
  it('fails on a cycle of type-only imports, naming the files in order', () => {
    const { status, stderr } = check('cycle');
    expect(status).toBe(1);
    expect(stderr).toContain('cycle: routing/a.ts -> routing/b.ts -> routing/a.ts');
  });

  it('fails on a folder importing a folder above it', () => {
    const { status, stderr } = check('upward');
    expect(status).toBe(1);
    expect(stderr).toContain('upward: pool/node.ts (pool) imports core/cluster.ts (core)');
    expect(stderr).not.toContain('cycle:');
  });

  it('passes imports that run downward', () => {
    expect(check('clean')).toEqual({ status: 0, stderr: '' });
  });

  it('passes on lib/ (the known violations listed in the script aside)', () => {
    expect(check()).toEqual({ status: 0, stderr: '' });
  });
});
