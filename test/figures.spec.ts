import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { renderMarkdown, type BenchRun } from '../bench/bench.report.js';
import { atLeast, atMost, figure, judge, medianInterval } from '../bench/bench.results.js';
import { GENERATED_DOCS, userDocs } from './support/docs.js';
import { commitOf, readStamp, renderStamp } from './support/stamp.js';

// The figures users read are generated (docs/CHAOS.md by `npm run chaos`, BENCHMARKS.md by
// `npm run bench`), and the README and the pages under docs/ either link to them or quote them
// exactly. No cluster: this reads the files. Also the rules the generators apply: the stamp, and
// a bench target judged by the confidence interval of the median of its pairs.

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const read = (file: string) => readFileSync(path.join(root, file), 'utf8');

/** A number with the unit of a measured figure: `589 ms`, `882/s`, `0.971×`, `2.5 %`, `+0.68 µs`. */
const FIGURE = /\d[\d,]*(?:\.\d+)?\s?(?:ms|µs|×|%|\/s)/g;
/** Words that mark a sentence as quoting a measurement (rather than stating a goal or a default). */
const QUOTE = /\bmeasured\b|\bchaos run\b|\bin that run\b|\bcommitted run\b|\bload average\b/i;

const normalize = (figure: string) => figure.replace(/[\s,]/g, '');

/**
 * Figures a page (the README, a page under docs/) quotes as measured that no stamped document
 * gives: every sentence (or table cell) that reads as a measurement is checked figure by figure
 * against the text of the generated documents that name their commit and command.
 */
export function staleQuotes(readme: string, documents: Record<string, string>): string[] {
  const stamped = Object.entries(documents).filter(([, text]) => readStamp(text) !== undefined);
  const known = new Set(stamped.flatMap(([, text]) => (text.match(FIGURE) ?? []).map(normalize)));
  const paragraphs = readme.replace(/```[\s\S]*?```/g, '').split(/\n\s*\n/);
  const clauses = paragraphs.flatMap((p) => p.replace(/\n/g, ' ').split(/\||(?<=[.!?])\s+(?=[A-Z`(*[])/));
  const stale: string[] = [];
  for (const clause of clauses) {
    if (!QUOTE.test(clause)) continue;
    for (const figure of clause.match(FIGURE) ?? []) {
      if (!known.has(normalize(figure))) stale.push(`${figure} in "${clause.trim().slice(0, 120)}"`);
    }
  }
  return stale;
}

describe('published figures', () => {
  const documents = { 'docs/CHAOS.md': read('docs/CHAOS.md'), 'BENCHMARKS.md': read('BENCHMARKS.md') };
  const pages = userDocs(root).filter((doc) => !GENERATED_DOCS.includes(doc.file));
  /** The README and the hand-written pages under docs/, as one text. */
  const docs = pages.map((doc) => doc.text).join('\n\n');

  it('the README and docs/ quote no measured figure that the stamped CHAOS.md and BENCHMARKS.md do not give', () => {
    expect(pages.map((doc) => doc.file)).toEqual(expect.arrayContaining(['README.md', 'docs/failover.md', 'docs/observability.md']));
    expect(pages.flatMap((doc) => staleQuotes(doc.text, documents).map((stale) => `${doc.file}: ${stale}`))).toEqual([]);
  });

  it('the README links to both documents', () => {
    const readme = read('README.md');
    expect(readme).toContain('(docs/CHAOS.md)');
    expect(readme).toContain('(BENCHMARKS.md)');
  });

  it('BENCHMARKS.md names the command that produced it, and its commit', () => {
    const text = documents['BENCHMARKS.md'];
    // Older runs put the commit in the machine table only; a run of today's generator stamps its first line.
    const stamp = readStamp(text);
    expect(stamp?.command ?? /Produced by `([^`]+)`/.exec(text)?.[1]).toMatch(/npm run bench$/);
    expect(stamp?.commit ?? /\| Commit \| ([0-9a-f]{7,40})/.exec(text)?.[1]).toMatch(/^[0-9a-f]{7,40}$/);
  });

  it('the subset counts the README and docs/ give are the ones the subset scripts check', () => {
    const expected = (script: string) => /^subset_tests=(\d+)$/m.exec(read(script))?.[1];
    expect(expected('scripts/node-lts.sh')).toMatch(/^\d+$/);
    expect(docs).toContain(`interop: ${expected('scripts/node-lts.sh')} tests, a count the script checks)`);
    expect(docs).toContain(`it must pass its ${expected('scripts/node-lts.sh')} tests`);
    expect(docs).toContain(`fewer tests pass than the subset holds (${expected('scripts/nest11.sh')})`);
  });

  it('docs/CHAOS.md names the command that produced it', () => {
    expect(/Produced by `([^`]+)`/.exec(documents['docs/CHAOS.md'])?.[1]).toMatch(/npm run chaos$/);
  });

  describe('staleQuotes (the check above, on made-up text)', () => {
    const chaos = `${renderStamp('npm run chaos', 'abc1234', '2026-12-04T10:00:00.000Z')} (2 CPUs)\n\n- **(f) measured**: out of rotation 589 ms after SIGSTOP; reads 882/s before`;

    it('reports a measured figure the documents do not give', () => {
      const readme = 'Intro.\n\nHung replicas: out of rotation 723 ms measured, reads 882/s kept.\n';
      expect(staleQuotes(readme, { chaos })).toEqual(['723 ms in "Hung replicas: out of rotation 723 ms measured, reads 882/s kept."']);
    });

    it('accepts a quote that matches, and goals or defaults that are not quotes', () => {
      const readme = 'The chaos run measured 589 ms and 882/s. Out of rotation within 750 ms (750 ms by default).\n\n| row | goal 750 ms | measured in docs/CHAOS.md |\n';
      expect(staleQuotes(readme, { chaos })).toEqual([]);
    });

    it('does not accept figures from a document without a stamp', () => {
      const unstamped = chaos.replace(/^Produced by .*$/m, 'Produced by hand');
      expect(staleQuotes('The chaos run measured 589 ms.', { unstamped })).toEqual([expect.stringMatching(/^589 ms/)]);
    });
  });
});

describe('the stamp of a generated document', () => {
  it('reads back what the generators write', () => {
    expect(readStamp(`# Chaos suite\n\n${renderStamp('PGPOOLS_CLUSTER_OFFSET=6 npm run chaos', '2c859ae', '2026-12-04T21:00:00.000Z')} (2 CPUs)`)).toEqual({
      command: 'PGPOOLS_CLUSTER_OFFSET=6 npm run chaos',
      commit: '2c859ae',
      dirty: false,
      date: '2026-12-04T21:00:00.000Z',
    });
    expect(readStamp(renderStamp('npm run bench', '2c859ae + uncommitted changes to lib/a.ts', '2026-12-04T21:00:00Z'))).toMatchObject({ commit: '2c859ae', dirty: true });
    expect(readStamp('Produced by `npm run chaos` on 2026-12-01T10:28:42.743Z')).toBeUndefined();
  });

  it('names the checked-out commit, and what differs from it', () => {
    expect(commitOf(root, [])).toMatch(/^[0-9a-f]{7,40}( \+ uncommitted changes to .+)?$/);
  });
});

describe('a bench target is judged by the 95 % confidence interval of the median of its pairs', () => {
  const target = atLeast(0.97);
  const around = (centre: number, n: number) => Array.from({ length: n }, (_, i) => centre + (i - (n - 1) / 2) / 100);

  it('the interval is two order statistics from the binomial distribution, and narrows as pairs are added', () => {
    // n = 6: P(Bin(6, ½) = 0) = 1/64 ≤ 2.5 %, P(≤ 1) = 7/64 > 2.5 %: the extremes.
    expect(medianInterval([6, 1, 5, 2, 4, 3])).toEqual([1, 6]);
    // n = 21: P(≤ 5) = 1.33 %, P(≤ 6) = 3.9 %: x(6) and x(16).
    expect(medianInterval(around(1, 21))).toEqual([around(1, 21)[5], around(1, 21)[15]]);
    // n = 41: P(≤ 13) = 1.2 %, P(≤ 14) = 2.8 %: x(14) and x(28).
    expect(medianInterval(around(1, 41))).toEqual([around(1, 41)[13], around(1, 41)[27]]);
    expect(medianInterval([1, 2, 3, 4, 5])).toBeUndefined();
  });

  it('met only when the whole interval clears the target, not met when it misses it, not resolved when it straddles it', () => {
    expect(judge(1.0, target, around(1.0, 9))).toEqual({ verdict: 'met', ci: [0.97, 1.03] });
    expect(judge(0.9, target, around(0.9, 9))).toEqual({ verdict: 'not met', ci: [0.87, 0.93] });
    const noisy = [0.43, 0.5, 0.9, 0.95, 1.118, 1.2, 1.3, 2.0, 2.73];
    expect(judge(1.118, target, noisy)).toEqual({ verdict: 'not resolved', ci: [0.5, 2.0] });
    expect(judge(1.5, atMost(2, '≤ 2 µs'), [1.1, 1.2, 1.4, 1.5, 1.6, 2.4, 2.6]).verdict).toBe('not resolved');
  });

  it('a missing figure is not met; without enough pairs the figure itself decides', () => {
    expect(judge(Number.NaN, target)).toEqual({ verdict: 'not met' });
    expect(judge(Number.NaN, target, [1, 1, 1, 1])).toEqual({ verdict: 'not met' });
    expect(judge(0.98, target, [0.5, 1.5, 0.7, 1.2, 0.9])).toEqual({ verdict: 'met' });
    expect(judge(0.96, target)).toEqual({ verdict: 'not met' });
  });

  it('uses the samples of a per-pair figure (× or µs) only', () => {
    const noisy = [0.43, 0.5, 0.9, 0.95, 1.118, 1.2, 1.3, 2.0, 2.73];
    expect(figure({ id: 'r', label: 'ratio', value: 1.118, valueUnit: '×', target, samples: noisy })).toMatchObject({ verdict: 'not resolved', met: undefined });
    // Heap sizes are not values of a bytes/query figure: the figure decides.
    expect(figure({ id: 'm', label: 'growth', value: 0.4, valueUnit: 'bytes/query', target: atMost(1, '≤ 1'), samples: [9e6, 9e6, 9e6, 9e6] })).toMatchObject({ verdict: 'met', met: true });
  });

  it('BENCHMARKS.md lists a failed scenario and a NaN figure under "Targets not met", a straddling one under "not resolved"', () => {
    const run: BenchRun = {
      mode: 'full',
      command: 'npm run bench',
      durationMs: 1000,
      machine: {
        cpuModel: 'cpu',
        cores: 2,
        memoryGb: 1,
        os: 'os',
        node: 'v20',
        pgDriver: '8',
        nest: '12',
        postgres: 'PostgreSQL 15',
        loadAverageAtStart: [1, 1, 1],
        gitCommit: 'abc1234',
        date: '2026-12-04T21:00:00.000Z',
      },
      scenarios: [
        { id: '1', title: 'Query path', method: '', durationMs: 1, figures: [figure({ id: '1.a', label: 'SELECT 1', value: 1.118, valueUnit: '×', target, samples: [0.43, 0.5, 0.9, 0.95, 1.118, 1.2, 1.3, 2.0, 2.73] })] },
        { id: '2', title: 'Missing', method: '', durationMs: 1, figures: [figure({ id: '2.a', label: 'NaN figure', value: Number.NaN, valueUnit: '×', target })] },
        { id: '3', title: 'Broken', method: '', durationMs: 1, figures: [], error: 'server gone' },
      ],
    };
    const text = renderMarkdown(run);
    expect(readStamp(text)).toEqual({ command: 'npm run bench', commit: 'abc1234', dirty: false, date: '2026-12-04T21:00:00.000Z' });
    const notMet = text.slice(text.indexOf('## Targets not met'), text.indexOf('## Targets not resolved'));
    expect(notMet).toContain('**2. NaN figure: —');
    expect(notMet).toContain('**3. Broken: no figure (the scenario failed: server gone).**');
    const unresolved = text.slice(text.indexOf('## Targets not resolved'), text.indexOf('## Reading the figures'));
    expect(unresolved).toContain('**1. SELECT 1: 1.118× (95% CI 0.500× – 2.000×) (target ≥ 0.97×).**');
    expect(text).toContain('| 1 | SELECT 1 |  |  | 1.118× (95% CI 0.500× – 2.000×) | ≥ 0.97× | ≈ not resolved at this noise |');
  });
});
