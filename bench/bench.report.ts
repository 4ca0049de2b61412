import { renderStamp } from '../test/support/stamp.js';
import type { Figure, ScenarioResult } from './bench.results.js';

export interface MachineFacts {
  cpuModel: string;
  cores: number;
  memoryGb: number;
  os: string;
  node: string;
  pgDriver: string;
  nest: string;
  postgres: string;
  loadAverageAtStart: number[];
  loadAverageAtEnd?: number[];
  /** How client and servers were kept on separate CPUs (bench/bench.affinity.ts), or why not. */
  cpuPinning?: string;
  gitCommit: string;
  date: string;
}

export interface BenchRun {
  mode: 'full' | 'smoke';
  command: string;
  machine: MachineFacts;
  durationMs: number;
  scenarios: ScenarioResult[];
}

const INTEGER = new Intl.NumberFormat('en-US', { maximumFractionDigits: 0 });

export function formatNumber(value: number | undefined, unit?: string): string {
  if (value === undefined || !Number.isFinite(value)) return '—';
  if (unit === 'ms') return value.toFixed(2);
  if (unit === 'MB') return value.toFixed(1);
  if (unit === 'max/min' || unit === 'bytes/query') return value.toFixed(2);
  if (unit === 'queries') return INTEGER.format(value);
  return Math.abs(value) >= 100 ? INTEGER.format(value) : value.toFixed(2);
}

export function formatValue(f: Figure): string {
  if (!Number.isFinite(f.value)) return '—';
  switch (f.valueUnit) {
    case '×':
      return `${f.value >= 20 ? f.value.toFixed(1) : f.value.toFixed(3)}×`;
    case 'µs':
      return `${f.value >= 0 ? '+' : ''}${f.value.toFixed(2)} µs`;
    case 'ns':
      return `${f.value.toFixed(0)} ns`;
    case 'queries':
      return INTEGER.format(f.value);
    default:
      return `${f.value.toFixed(2)} ${f.valueUnit}`;
  }
}

export function formatMet(f: Figure): string {
  if (f.target === undefined) return '';
  if (f.verdict === 'not resolved') return 'not resolved';
  return f.verdict === 'met' ? 'met' : 'NOT met';
}

/** The figure, with the 95 % confidence interval of its median when its pairs judged the target. */
function formatResult(f: Figure): string {
  if (f.ci === undefined) return formatValue(f);
  const [low, high] = f.ci.map((q) => formatValue({ ...f, value: q }));
  return `${formatValue(f)} (95% CI ${low} – ${high})`;
}

function markdownVerdict(f: Figure): string {
  if (f.target === undefined) return '';
  if (f.verdict === 'met') return '✅ met';
  if (f.verdict === 'not resolved') return '≈ not resolved at this noise';
  return '❌ not met';
}

function side(value: number | undefined, unit: string | undefined): string {
  return value === undefined ? '' : `${formatNumber(value, unit)}${unit ? ` ${unit}` : ''}`;
}

/** Plain-text table for the terminal. */
export function renderTable(scenarios: readonly ScenarioResult[]): string {
  const rows: string[][] = [['#', 'Figure', 'Ours', 'Reference', 'Result', 'Target', 'Met']];
  for (const s of scenarios) {
    if (s.error !== undefined) {
      rows.push([s.id, `${s.title}: FAILED (${s.error.split('\n')[0]!.slice(0, 80)})`, '', '', '', '', '']);
      continue;
    }
    for (const f of s.figures) {
      rows.push([s.id, f.label, side(f.ours, f.unit), side(f.raw, f.unit), formatResult(f), f.target?.text ?? '', formatMet(f)]);
    }
  }
  const widths = rows[0]!.map((_, c) => Math.min(c === 1 ? 78 : 40, Math.max(...rows.map((r) => r[c]!.length))));
  const line = (r: string[]) => r.map((cell, c) => (cell.length > widths[c]! ? `${cell.slice(0, widths[c]! - 1)}…` : cell.padEnd(widths[c]!))).join(' │ ');
  const rule = widths.map((w) => '─'.repeat(w)).join('─┼─');
  return [line(rows[0]!), rule, ...rows.slice(1).map(line)].join('\n');
}

function escape(text: string): string {
  return text.replace(/\|/g, '\\|');
}

export function renderMarkdown(run: BenchRun): string {
  const m = run.machine;
  const out: string[] = [];
  out.push('# Benchmarks', '');
  out.push(
    `${renderStamp(run.command, m.gitCommit, m.date)} (full run, ${(run.durationMs / 1000).toFixed(0)} s). ` +
      'Every figure compares our side with its reference **in the same run**, with repetitions interleaved ' +
      '(ours, reference, reference, ours, …) after a warm-up of each; the median of the per-pair figures is reported with its ' +
      '95 % confidence interval (distribution-free: two order statistics of the pairs, chosen with the binomial distribution). ' +
      'A target is met only when that whole interval clears it, not met when the interval misses it or the figure is missing, and ' +
      '"not resolved at this noise" when the interval straddles it. The raw data is in ' +
      '[`bench/results.json`](bench/results.json); the code is in [`bench/`](bench/).',
    '',
  );
  out.push('## Machine', '', '| | |', '|---|---|');
  out.push(`| CPU | ${escape(m.cpuModel)} |`);
  out.push(`| Cores | ${m.cores} |`);
  out.push(`| CPU pinning | ${escape(m.cpuPinning ?? 'none')} |`);
  out.push(`| Memory | ${m.memoryGb.toFixed(1)} GB |`);
  out.push(`| OS | ${escape(m.os)} |`);
  out.push(`| Node.js | ${m.node} |`);
  out.push(`| pg (node-postgres) | ${m.pgDriver} |`);
  out.push(`| NestJS | ${m.nest} |`);
  out.push(`| PostgreSQL server | ${escape(m.postgres)} (primary + 2 streaming replicas on loopback, \`bash scripts/cluster.sh start\`) |`);
  out.push(`| Load average (1/5/15 min) at start | ${m.loadAverageAtStart.map((l) => l.toFixed(2)).join(' / ')} |`);
  if (m.loadAverageAtEnd) out.push(`| Load average at end | ${m.loadAverageAtEnd.map((l) => l.toFixed(2)).join(' / ')} |`);
  out.push(`| Commit | ${m.gitCommit} |`);
  out.push('');
  out.push('## Summary', '');
  out.push('| # | Figure | Ours | Reference | Result | Target | Met |', '|---|---|---:|---:|---:|---|---|');
  for (const s of run.scenarios) {
    if (s.error !== undefined) {
      out.push(`| ${s.id} | ${escape(s.title)}: **failed** — ${escape(s.error.split('\n')[0]!)} | | | | | |`);
      continue;
    }
    for (const f of s.figures) {
      const ref = f.reference ? `${side(f.raw, f.unit)}` : '';
      out.push(
        `| ${s.id} | ${escape(f.label)} | ${side(f.ours, f.unit)} | ${ref} | ${formatResult(f)} | ${f.target?.text ?? ''} | ${markdownVerdict(f)} |`,
      );
    }
  }
  out.push('');
  const missed = run.scenarios.flatMap((s) => s.figures.filter((f) => f.target !== undefined && f.verdict === 'not met').map((f) => ({ s, f })));
  const failed = run.scenarios.filter((s) => s.error !== undefined);
  if (missed.length > 0 || failed.length > 0) {
    out.push('## Targets not met', '');
    for (const s of failed) out.push(`- **${s.id}. ${escape(s.title)}: no figure (the scenario failed: ${escape(s.error!.split('\n')[0]!)}).** Each of its targets counts as not met.`);
    for (const { s, f } of missed) {
      out.push(`- **${s.id}. ${escape(f.label)}: ${formatResult(f)} (target ${f.target!.text}).** ${f.whenNotMet ?? 'See the scenario below for the per-repetition figures.'}`);
    }
    out.push('');
  }
  const unresolved = run.scenarios.flatMap((s) => s.figures.filter((f) => f.verdict === 'not resolved').map((f) => ({ s, f })));
  if (unresolved.length > 0) {
    out.push('## Targets not resolved at this noise', '');
    for (const { s, f } of unresolved) {
      out.push(`- **${s.id}. ${escape(f.label)}: ${formatResult(f)} (target ${f.target!.text}).** The 95 % confidence interval of the median straddles the target, so this run cannot tell.`);
    }
    out.push('');
  }
  out.push('## Reading the figures', '');
  out.push(
    '- **Same machine, same run.** Node, autocannon and the three PostgreSQL servers share the cores, so absolute rates move with ' +
      'whatever else runs; the ratios, taken pair by pair from interleaved slices, are what the targets judge. Every run records the load average.',
    '- **Same server work.** The library opens every connection with `statement_timeout` (preset: 60 s) and `TimeZone=UTC` ' +
      '(replicas also `default_transaction_read_only=on`). The reference pools get the same startup `options`, so a ratio shows what the ' +
      'library itself costs. PostgreSQL 15 arms and disarms a timer for `statement_timeout` on every statement; the rows marked ' +
      '"bare pg.Pool" show that server-side cost separately.',
    '- **Leak detection** (`leakDetectionThresholdMs`, off by default) records where each client lent to the caller was taken ' +
      '(`connect()`, `withClient`, transactions): one `new Error()` per checkout, formatted only when a leak is reported. `db.query` gives its ' +
      'connection back itself and records nothing, so scenario 1\'s "leak detection on" rows run the same path as the "off" ones; ' +
      'scenario 2\'s "leak detection on" row gives the cost per lent client.',
    '- **AsyncLocalStorage.** On Node 20 the first `AsyncLocalStorage.run()` (the routing interceptor, `@ReadOnly()`) installs promise ' +
      'hooks that every later promise in the process pays for. Scenarios 3, 5 and 7 run each side in its own process so only ours pays it, as in a real app.',
    '- **Smoke mode** (`npm run bench:smoke`, used by CI) runs every scenario for a fraction of a second to keep the scripts working; ' +
      'its numbers mean nothing and it never writes this file.',
    '',
  );
  out.push('## Scenarios', '');
  for (const s of run.scenarios) {
    out.push(`### ${s.id}. ${s.title}`, '');
    if (s.error !== undefined) {
      out.push(`Failed: \`${s.error.split('\n')[0]}\``, '');
      continue;
    }
    out.push(s.method, '');
    for (const f of s.figures) {
      const parts = [`**${formatValue(f)}**`];
      if (f.reference) parts.push(`ours ${side(f.ours, f.unit)} vs ${f.reference} ${side(f.raw, f.unit)}`);
      if (f.note) parts.push(f.note);
      if (f.samples && f.samples.length > 0 && f.valueUnit !== 'bytes/query') {
        parts.push(`per repetition: ${f.samples.map((v) => (Math.abs(v) >= 100 ? INTEGER.format(v) : v.toFixed(3))).join(', ')}`);
      }
      out.push(`- ${f.label}: ${parts.join('; ')}.`);
    }
    out.push('', `_${(s.durationMs / 1000).toFixed(1)} s_`, '');
  }
  return `${out.join('\n').trimEnd()}\n`;
}
