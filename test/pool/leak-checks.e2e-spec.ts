import pg from 'pg';
import { startApp, startupError, type TestApp } from '../support/app.js';
import { clusterConfig, nodeOptions, replicaOptions } from '../support/cluster.js';
import { expectNoSessionsLeft, sessionCount, sessionCounts, sessionNames, sessions, waitForNoSessions } from '../support/sessions.js';
import { waitFor } from '../support/wait.js';
import { CHAOS_POOL, waitForBaseline } from '../chaos/chaos.driver.js';

// The leak checks every e2e test and the chaos suite rely on count every connection the library
// opens for an application: its pools' (`application_name` exactly) and the ones beside them,
// `<app>:monitor` (node monitor) and `<app>:roles` (role checks). Proven here on the real cluster:
// the check sees them while the application runs, none is left after app.close() or after a
// failed start, and a `:monitor` session left open on purpose makes every form of the check fail.

const APP = 'e2e-leak-checks';
const NO_SESSIONS = { primary: 0, replica1: 0, replica2: 0 };

describe('leak checks count the library\'s :monitor and :roles sessions', () => {
  afterAll(() => expectNoSessionsLeft(APP));

  it('sees the :monitor and :roles sessions of a running application, and none is left after app.close()', async () => {
    const t = await startApp({ preset: 'test', applicationName: APP, primary: nodeOptions('primary'), replicas: replicaOptions(), min: 1, max: 2 });
    try {
      await t.db.query('SELECT 1');
      const names = await waitFor(
        'the monitor and role-check sessions on the primary',
        async () => {
          const found = await sessionNames('primary', APP);
          return found.includes(`${APP}:monitor`) && found.includes(`${APP}:roles`) ? found : undefined;
        },
        5000,
      );
      expect(names).toEqual(expect.arrayContaining([APP, `${APP}:monitor`, `${APP}:roles`]));
      expect(await sessionCount('primary', APP)).toBe(names.length);
      expect(await sessionCount('primary', APP, { poolOnly: true })).toBe(t.db.primary.pool.totalCount);
    } finally {
      await t.close();
    }
    // Every session ends when the application closes: no wait for a companion to time out later.
    await waitForNoSessions(APP, { timeoutMs: 5000, everyMs: 50 });
    await expectNoSessionsLeft(APP);
  });

  it('leaves no session, its :monitor ones included, after a failed start', async () => {
    const failing = `${APP}-failed-start`;
    // The replicas connect (and their monitors open) while the primary's start-up retries run out.
    const started = startupError({
      preset: 'test',
      applicationName: failing,
      primary: { ...nodeOptions('primary'), port: 1 },
      replicas: replicaOptions(),
      min: 1,
      retryAttempts: 3,
      retryDelayMs: 400,
    });
    let settled = false;
    void started.finally(() => (settled = true));
    const seen = new Set<string>();
    while (!settled) {
      for (const name of await sessionNames('replica1', failing)) seen.add(name);
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
    const error = await started;
    expect(error).toBeInstanceOf(Error);
    // The start got far enough to open the replicas' pool and monitor connections, so there was something to leak.
    expect([...seen]).toEqual(expect.arrayContaining([failing, `${failing}:monitor`]));
    await waitForNoSessions(failing, { timeoutMs: 5000, everyMs: 50 });
    await expectNoSessionsLeft(failing);
  });

  describe('a :monitor session left open on purpose', () => {
    let leaked: pg.Client | undefined;
    let t: TestApp | undefined;

    afterEach(async () => {
      await t?.close();
      t = undefined;
      await leaked?.end();
      leaked = undefined;
    });

    async function leakMonitorSession(applicationName: string, node: 'primary' | 'replica2'): Promise<void> {
      leaked = new pg.Client({ ...clusterConfig[node], application_name: `${applicationName}:monitor` });
      await leaked.connect();
    }

    it('makes sessionCounts, waitForNoSessions and the chaos sessions() report it', async () => {
      await leakMonitorSession(APP, 'replica2');
      expect(await sessionCounts(APP)).toEqual({ ...NO_SESSIONS, replica2: 1 });
      expect(await sessionCounts(APP, { poolOnly: true })).toEqual(NO_SESSIONS);
      expect((await sessions('replica2', APP)).map((s) => s.application_name)).toEqual([`${APP}:monitor`]);
      await expect(waitForNoSessions(APP, { timeoutMs: 300, everyMs: 50 })).rejects.toThrow(
        new RegExp(`no ${APP} session left on replica2.*; left: ${APP}:monitor$`),
      );
    });

    it('keeps the chaos baseline from being reached and counts it as leaked', async () => {
      const app = `${APP}-baseline`;
      t = await startApp({
        preset: 'test',
        applicationName: app,
        primary: nodeOptions('primary'),
        replicas: replicaOptions(),
        min: CHAOS_POOL.min,
        max: CHAOS_POOL.max,
        routing: { replicaBanMs: CHAOS_POOL.replicaBanMs },
      });
      await waitFor('the library\'s own monitor session on the primary', async () => (await sessionNames('primary', app)).includes(`${app}:monitor`), 5000);
      const clean = await waitForBaseline(t, app, 10_000);
      expect(clean).toMatchObject({ reached: true, leaked: 0, detail: '' });
      // A second `:monitor` session on the primary, as a monitor connection that was not closed would leave.
      await leakMonitorSession(app, 'primary');
      const check = await waitForBaseline(t, app, 1000);
      expect(check.reached).toBe(false);
      expect(check.leaked).toBe(1);
      expect(check.detail).toContain(`primary 2 sessions named ${app}:monitor`);
    });
  });
});
