import { TIME_MARGIN_MS } from '../support/margin.js';
import type { ChaosRun, ScenarioName, ScenarioResult } from './chaos.driver.js';

export { TIME_MARGIN_MS };

// The goals the chaos suite states (docs/CHAOS.md, docs/failover.md, "Failure handling" and "Hung nodes"),
// each with the number it claims and the margin it is checked with. `npm run chaos` prints them
// with what was measured and fails when one is missed; the short forms in `npm test`
// (test/chaos/chaos.e2e-spec.ts, test/chaos/chaos-freeze.e2e-spec.ts) check the same goals for their rows.

export interface ChaosGoal {
  scenario: ScenarioName;
  /** The claim, with its number, as the docs state it. */
  claim: string;
  /** What is measured, and its unit. */
  measure: (r: ScenarioResult) => number | undefined;
  unit: 'ms' | '';
  /** The number the claim states. */
  goal: number;
  /** Added to `goal` for the check (time bounds only). */
  margin: number;
}

const fact = (name: string) => (r: ScenarioResult) => r.facts[name] as number | undefined;

/** Failed writes of (b) that started outside [stop − 100 ms, primary accepts again + 1 s + margin]: writes fail only while it is down. */
function failedWritesOutsideOutage(r: ScenarioResult): number | undefined {
  const { stopAt, upAt } = r.facts as Record<string, number | undefined>;
  if (stopAt === undefined || upAt === undefined) return undefined;
  return r.ops.filter((o) => o.kind === 'write' && !o.ok && (o.start < stopAt - 100 || o.start > upAt + 1000 + TIME_MARGIN_MS)).length;
}

export const CHAOS_GOALS: readonly ChaosGoal[] = [
  { scenario: 'replica-kill', claim: 'A replica killed (kill -9) and restarted: 0 failed reads', measure: (r) => r.failedReads, unit: '', goal: 0, margin: 0 },
  { scenario: 'primary-restart', claim: 'Primary restart: writes succeed again within 1 s of the primary accepting connections', measure: (r) => r.recoveryMs, unit: 'ms', goal: 1000, margin: TIME_MARGIN_MS },
  { scenario: 'primary-restart', claim: 'Primary restart: writes fail only while it is down (failed writes started after that)', measure: failedWritesOutsideOutage, unit: '', goal: 0, margin: 0 },
  { scenario: 'primary-restart', claim: 'Primary restart: 0 failed reads', measure: (r) => r.failedReads, unit: '', goal: 0, margin: 0 },
  { scenario: 'terminate-all', claim: 'Idle connections terminated: nothing for callers (0 failed requests)', measure: (r) => r.failedReads + r.failedWrites, unit: '', goal: 0, margin: 0 },
  { scenario: 'exhaust', claim: 'Exhausted pool: each waiting caller gets PoolAcquireTimeoutError after acquireTimeoutMs (1000 ms)', measure: fact('slowestCallerMs'), unit: 'ms', goal: 1000, margin: TIME_MARGIN_MS },
  { scenario: 'exhaust', claim: 'Exhausted pool: 0 failed reads', measure: (r) => r.failedReads, unit: '', goal: 0, margin: 0 },
  { scenario: 'primary-promoted', claim: 'Primary promoted: writes go to the new primary within 2 s of `pg_ctl promote`', measure: (r) => r.recoveryMs, unit: 'ms', goal: 2000, margin: TIME_MARGIN_MS },
  {
    scenario: 'primary-promoted',
    claim: 'Primary promoted: 0 failed reads (from the stop until the harness rebuilds the initial topology; the row counts that rebuild too)',
    measure: fact('failedReadsInFailover'),
    unit: '',
    goal: 0,
    margin: 0,
  },
  {
    scenario: 'replica-freeze',
    claim: 'Frozen replica: out of read rotation within monitor.intervalMs + monitor.timeoutMs (750 ms by default)',
    measure: fact('outOfRotationMs'),
    unit: 'ms',
    goal: 750,
    margin: TIME_MARGIN_MS,
  },
  { scenario: 'replica-freeze', claim: 'Frozen replica: 0 failed reads', measure: (r) => r.failedReads, unit: '', goal: 0, margin: 0 },
  {
    scenario: 'primary-freeze',
    claim: 'Frozen primary: every write answered (with an error) within acquireTimeoutMs (2000 ms)',
    measure: fact('slowestWriteMs'),
    unit: 'ms',
    goal: 2000,
    margin: TIME_MARGIN_MS,
  },
  { scenario: 'primary-freeze', claim: 'Frozen primary: replica reads go on (0 failed)', measure: fact('failedReadsDuring'), unit: '', goal: 0, margin: 0 },
  { scenario: 'primary-freeze', claim: 'Frozen primary: a write succeeds within 1 s of SIGCONT', measure: fact('firstWriteOkAfterThawMs'), unit: 'ms', goal: 1000, margin: 0 },
];

/** Every scenario: no crash, back to baseline, nothing leaked. */
const EVERY_SCENARIO: ReadonlyArray<Omit<ChaosGoal, 'scenario'>> = [
  { claim: 'The process never crashes (uncaught exceptions)', measure: (r) => r.crashes, unit: '', goal: 0, margin: 0 },
  { claim: 'Leaked clients and sessions after the scenario', measure: (r) => (r.baselineReached ? r.leakedAfter : undefined), unit: '', goal: 0, margin: 0 },
];

export interface GoalCheck {
  scenario: ScenarioName;
  label: string;
  claim: string;
  measured: number | undefined;
  unit: string;
  /** `≤ goal (+ margin)` as text. */
  bound: string;
  met: boolean;
}

function check(r: ScenarioResult, goal: Omit<ChaosGoal, 'scenario'>): GoalCheck {
  const measured = goal.measure(r);
  const unit = goal.unit ? ` ${goal.unit}` : '';
  const bound = goal.margin > 0 ? `≤ ${goal.goal}${unit} (+${goal.margin}${unit} margin: ${goal.goal + goal.margin}${unit})` : goal.goal === 0 ? '0' : `≤ ${goal.goal}${unit}`;
  return { scenario: r.scenario, label: r.label, claim: goal.claim, measured, unit, bound, met: measured !== undefined && measured <= goal.goal + goal.margin };
}

/** The goals of every scenario the run made, checked; a figure that was not measured is not met. */
export function checkGoals(run: ChaosRun): GoalCheck[] {
  const checks: GoalCheck[] = [];
  for (const r of run.results) {
    for (const goal of CHAOS_GOALS.filter((g) => g.scenario === r.scenario)) checks.push(check(r, goal));
    for (const goal of EVERY_SCENARIO) checks.push(check(r, goal));
  }
  return checks;
}

const AFTER_CLOSE = 'Sessions left after app.close(), its `:monitor` and `:roles` ones included (polled up to 5 s)';

/** The goals that were missed, one line each (empty when every goal was met). */
export function missedGoals(run: ChaosRun): string[] {
  const missed = checkGoals(run)
    .filter((c) => !c.met)
    .map((c) => `${c.label}: ${c.claim}: measured ${c.measured === undefined ? 'nothing' : `${c.measured}${c.unit}`}, goal ${c.bound}`);
  if (run.sessionsLeftAfterClose.length > 0) missed.push(`${AFTER_CLOSE}: ${run.sessionsLeftAfterClose.join(', ')}`);
  return missed;
}

/** The goals as a Markdown table (every scenario's crash and leak goals folded into one line per run). */
export function renderGoals(run: ChaosRun): string {
  const rows = checkGoals(run).filter((c) => EVERY_SCENARIO.every((g) => g.claim !== c.claim));
  const every = checkGoals(run).filter((c) => EVERY_SCENARIO.some((g) => g.claim === c.claim));
  const line = (claim: string, measured: string, bound: string, met: boolean) => `| ${claim} | ${measured} | ${bound} | ${met ? '✅ met' : '❌ missed'} |`;
  return [
    '| goal | measured | checked at | |',
    '|---|---:|---|---|',
    ...rows.map((c) => line(c.claim, c.measured === undefined ? '—' : `${Math.round(c.measured)}${c.unit}`, c.bound, c.met)),
    ...EVERY_SCENARIO.map((g) => {
      const mine = every.filter((c) => c.claim === g.claim);
      return line(`${g.claim}, every scenario`, String(mine.reduce((n, c) => n + (c.measured ?? Number.NaN), 0)), '0', mine.every((c) => c.met));
    }),
    line(AFTER_CLOSE, String(run.sessionsLeftAfterClose.length), '0', run.sessionsLeftAfterClose.length === 0),
  ].join('\n');
}
