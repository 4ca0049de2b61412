import { execFileSync } from 'node:child_process';

// The stamp every generated figure document carries (docs/CHAOS.md by `npm run chaos`,
// BENCHMARKS.md by `npm run bench`): the command, the commit it measured (with the files changed
// since, if any) and the date. test/figures.spec.ts reads it back.

/**
 * `git rev-parse --short HEAD` of `repoRoot`, plus ` + uncommitted changes to a, b, …` when the
 * tree differs from it; the files the command itself writes (`written`) do not count. `unknown`
 * outside a git checkout.
 */
export function commitOf(repoRoot: string, written: readonly string[]): string {
  try {
    const head = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: repoRoot, encoding: 'utf8' }).trim();
    const status = execFileSync('git', ['status', '--porcelain', '--', '.', ...written.map((file) => `:!${file}`)], { cwd: repoRoot, encoding: 'utf8' });
    const changed = status
      .split('\n')
      .map((line) => line.slice(3).trim())
      .filter((file) => file !== '');
    if (changed.length === 0) return head;
    return `${head} + uncommitted changes to ${changed.slice(0, 5).join(', ')}${changed.length > 5 ? ', …' : ''}`;
  } catch {
    return 'unknown';
  }
}

/** The first words of a generated document: `Produced by \`command\` at commit \`abc1234\` on <ISO date>`. */
export function renderStamp(command: string, commit: string, date: string): string {
  return `Produced by \`${command}\` at commit \`${commit}\` on ${date}`;
}

export interface Stamp {
  command: string;
  /** The short commit hash. */
  commit: string;
  /** True when the tree had uncommitted changes (beyond the document itself). */
  dirty: boolean;
  date: string;
}

const STAMP = /Produced by `([^`]+)` at commit `([0-9a-f]{7,40})( \+ uncommitted changes to [^`]+)?` on (\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z)/;

/** The stamp of a generated document, or `undefined` when it has none (an older or hand-made file). */
export function readStamp(markdown: string): Stamp | undefined {
  const m = STAMP.exec(markdown);
  return m ? { command: m[1]!, commit: m[2]!, dirty: m[3] !== undefined, date: m[4]! } : undefined;
}
