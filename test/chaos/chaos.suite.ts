import { clusterCtl } from '../support/cluster.js';
import { expectNoSessionsLeft } from '../support/sessions.js';
import { renderNotes, renderTable, runChaos, type ChaosOptions, type ChaosRun, type ScenarioResult } from './chaos.driver.js';
import { missedGoals, renderGoals } from './chaos.goals.js';

// The e2e side of a chaos run (test/chaos*.e2e-spec.ts): the run happens once before the file's
// tests, the cluster is started again whatever happened, its tables are printed, and every file
// checks the same things first: no session left after close, every goal of its rows met.

export interface ChaosSuite {
  /** The run (after beforeAll). */
  run(): ChaosRun;
  /** One scenario's result; throws when it did not run. */
  result(scenario: ScenarioResult['scenario']): ScenarioResult;
}

/** Registers the run and the shared checks of a chaos e2e file; `rows` names its rows of docs/CHAOS.md. */
export function chaosSuite(options: ChaosOptions, rows: string): ChaosSuite {
  let run: ChaosRun | undefined;
  const current = (): ChaosRun => {
    if (!run) throw new Error('the chaos run did not finish');
    return run;
  };

  beforeAll(async () => {
    try {
      run = await runChaos(options);
    } finally {
      await clusterCtl('start');
    }
    process.stdout.write(`\n${renderTable(run)}\n\n${renderNotes(run)}\n\n${renderGoals(run)}\n`);
  }, 240_000);

  afterAll(async () => {
    await expectNoSessionsLeft(options.applicationName);
  });

  it('leaves no session of the application (its :monitor and :roles ones included) after app.close()', () => {
    expect(current().sessionsLeftAfterClose).toEqual([]);
  });

  it(`meets every goal docs/CHAOS.md states for rows ${rows} (test/chaos/chaos.goals.ts)`, () => {
    expect(missedGoals(current())).toEqual([]);
  });

  return {
    run: current,
    result: (scenario) => {
      const r = current().results.find((x) => x.scenario === scenario);
      if (!r) throw new Error(`scenario ${scenario} did not run`);
      return r;
    },
  };
}

/** A scenario ended without a crash, with every pool back to its baseline and no leaked client. */
export function expectRecovered(r: ScenarioResult): void {
  expect({ scenario: r.scenario, crashes: r.crashes, baseline: r.baselineReached, leaked: r.leakedAfter, detail: r.facts.baselineDetail }).toEqual({
    scenario: r.scenario,
    crashes: 0,
    baseline: true,
    leaked: 0,
    detail: '',
  });
}
