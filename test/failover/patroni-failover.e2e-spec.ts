import { jest } from '@jest/globals';
import { DEFAULT_HOLD_WRITES_MS } from '../../lib/config/resolve-options.js';
import { preparePatroni, renderPatroniTable, runPatroniScenario, type PatroniResult } from '../chaos/patroni.driver.js';

// The short form of `npm run chaos:patroni` on the Patroni cluster of scripts/patroni.sh (etcd +
// three Patroni-managed PostgreSQL 15 nodes + HAProxy, started here if it is not running; about
// 10 s the first time): one planned switchover and one failover (SIGKILL of the leader's Patroni
// and postmaster, then it rejoins), each under 8 writer + 8 reader loops, with the multi-host
// primary URL. The killed node is started again (rejoin) in a finally.

jest.setTimeout(180_000);

describe('Patroni: switchover and failover (real Patroni cluster)', () => {
  const results: PatroniResult[] = [];

  beforeAll(async () => {
    await preparePatroni();
  }, 120_000);

  afterAll(() => {
    if (results.length > 0) process.stdout.write(`\n${renderPatroniTable(results)}\n`);
  });

  it('switchover, every option at its default: 0 failed writes (but those in flight at the shutdown that lost their connection), 0 failed reads, no acknowledged write lost, slowest write within the hold bound, the old leader back in reads within 1 s', async () => {
    const r = await runPatroniScenario('switchover', 'multi-host', { log: (l) => process.stdout.write(`${l}\n`) });
    results.push(r);
    // The only failed writes allowed: statements in flight when the old primary shut down whose
    // connection was lost with no answer (outcome unknown, so never run again), at most one per writer.
    expect({ failedWrites: r.failedWrites - r.lostInFlight, failedReads: r.failedReads, firstReadError: r.firstReadError, missingAcks: r.missingAcks }).toEqual({
      failedWrites: 0,
      failedReads: 0,
      firstReadError: '',
      missingAcks: 0,
    });
    expect(r.lostInFlight).toBeLessThanOrEqual(8);
    expect(r.to).not.toBe(r.from);
    expect(r.slowestWriteMs).toBeLessThanOrEqual(DEFAULT_HOLD_WRITES_MS);
    expect(r.backInReadsMs).toBeDefined();
    expect(r.backInReadsMs!).toBeLessThanOrEqual(1000);
  });

  it('failover (SIGKILL of the leader), fallbackToPrimary false: first write on the new leader within 1 s of Patroni publishing it, 0 failed reads, the killed node back in reads within 1 s of rejoining', async () => {
    const r = await runPatroniScenario('failover', 'multi-host', { extra: { routing: { fallbackToPrimary: false } }, log: (l) => process.stdout.write(`${l}\n`) });
    results.push(r);
    expect(r.to).not.toBe(r.from);
    expect({ failedReads: r.failedReads, firstReadError: r.firstReadError }).toEqual({ failedReads: 0, firstReadError: '' });
    expect(r.firstWriteAfterPublishMs).toBeDefined();
    expect(r.firstWriteAfterPublishMs!).toBeLessThanOrEqual(1000);
    expect(r.backInReadsMs).toBeDefined();
    expect(r.backInReadsMs!).toBeLessThanOrEqual(1000);
    // Reported, not asserted: asynchronous replication may lose the last acknowledged writes.
    process.stdout.write(`failover: ${r.missingAcks} acknowledged writes missing on ${r.to}; ${r.failedWrites} failed writes (${r.firstWriteError || '-'})\n`);
  });
});
