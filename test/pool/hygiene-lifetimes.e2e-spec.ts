import { readFileSync } from 'node:fs';
import type { PoolClient } from 'pg';
import { startApp } from '../support/app.js';
import { nodeOptions } from '../support/cluster.js';
import { expectNoSessionsLeft, poolSessions } from '../support/sessions.js';
import { sleep, waitFor } from '../support/wait.js';

// Connection lifetimes on the real primary: maxLifetimeMs with ±2.5% jitter per connection (so a
// pool opened at once does not reconnect at once), maxUses, the idle timeout above min, and TCP
// keep-alive on idle connections (checked in the kernel's socket table).

const APP = 'e2e-hygiene-lifetimes';

/**
 * The kernel's timer for the established TCP connection on a local port: `02` is the keep-alive
 * timer (see proc(5), /proc/net/tcp). Only state `01` (ESTABLISHED) counts: an earlier connection
 * that used the same local port may still be listed in TIME_WAIT (`06`, timer `03`).
 */
function tcpTimer(localPort: number): { timer: string; seconds: number } {
  const hex = localPort.toString(16).toUpperCase().padStart(4, '0');
  const line = readFileSync('/proc/net/tcp', 'utf8')
    .split('\n')
    .map((l) => l.trim().split(/\s+/))
    .find((cols) => cols[1]?.endsWith(`:${hex}`) && cols[3] === '01');
  if (!line) throw new Error(`no established /proc/net/tcp entry for local port ${localPort}`);
  const [timer, when] = line[5]!.split(':');
  return { timer: timer!, seconds: parseInt(when!, 16) / 100 };
}

function localPort(client: PoolClient): number {
  return (client as unknown as { connection: { stream: { localPort: number } } }).connection.stream.localPort;
}

describe('connection lifetimes (real primary)', () => {
  afterAll(() => expectNoSessionsLeft(APP));

  it('retires each connection after maxLifetimeMs ±2.5% (spread, not all at once) and refills to min', async () => {
    const lifetime = 3000;
    const t = await startApp({ preset: 'test', applicationName: APP, primary: nodeOptions('primary'), min: 6, max: 6, maxLifetimeMs: lifetime, lazy: true });
    try {
      // Client-side life of each connection: pg-pool's `connect` until its `remove` event.
      const pool = t.db.primary.pool;
      const bornAt = new Map<PoolClient, number>();
      const goneAt = new Map<PoolClient, number>();
      pool.on('connect', (client) => bornAt.set(client, Date.now()));
      pool.on('remove', (client) => goneAt.set(client, Date.now()));
      let ready!: () => void;
      const allOpen = new Promise<void>((resolve) => (ready = resolve));
      const holders = [1, 2, 3, 4, 5, 6].map(() => t.db.primary.withClient(async () => {
        if (pool.totalCount === 6 && bornAt.size === 6) ready();
        await allOpen;
      }));
      await Promise.all(holders);
      const first = await poolSessions('primary', APP);
      expect(first).toHaveLength(6);
      const originals = [...bornAt.keys()];
      await waitFor('six lifetime retirements', () => originals.every((c) => goneAt.has(c)), lifetime * 2);
      const lives = originals.map((c) => goneAt.get(c)! - bornAt.get(c)!);
      for (const life of lives) {
        expect(life).toBeGreaterThanOrEqual(lifetime * 0.975 - 5);
        expect(life).toBeLessThanOrEqual(lifetime * 1.025 + 150);
      }
      // Without jitter all six would live the same 3000 ms, within a few ms of each other.
      expect(Math.max(...lives) - Math.min(...lives)).toBeGreaterThan(10);
      expect(t.events.filter((e) => e.type === 'remove' && e.reason === 'lifetime').length).toBeGreaterThanOrEqual(6);

      const replaced = await waitFor('six new sessions', async () => {
        const rows = await poolSessions('primary', APP);
        return rows.length === 6 && rows.every((r) => !first.some((f) => f.pid === r.pid)) ? rows : undefined;
      }, 5000);
      expect(new Set(replaced.map((r) => r.backend_start.getTime())).size).toBeGreaterThan(1);
      expect(pool.totalCount).toBe(6);
      expect(t.cluster.primary.counters.evictions).toBeGreaterThanOrEqual(6);
    } finally {
      await t.close();
    }
  }, 20_000);

  it('closes a connection after maxUses checkouts', async () => {
    const t = await startApp({ preset: 'test', applicationName: APP, primary: nodeOptions('primary'), min: 1, max: 1, maxUses: 3 });
    try {
      const pids: number[] = [];
      for (let i = 0; i < 8; i++) pids.push((await t.db.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid);
      const uses = new Map<number, number>();
      for (const pid of pids) uses.set(pid, (uses.get(pid) ?? 0) + 1);
      expect(uses.size).toBeGreaterThanOrEqual(3);
      for (const n of uses.values()) expect(n).toBeLessThanOrEqual(3);
      const runs = pids.filter((pid, i) => i === 0 || pids[i - 1] !== pid).length;
      expect(runs).toBe(uses.size);
      await waitFor('max-uses remove events', () => t.events.filter((e) => e.type === 'remove' && e.reason === 'max-uses').length >= uses.size - 1, 2000);
    } finally {
      await t.close();
    }
  });

  it('closes idle connections above min after idleTimeoutMs', async () => {
    const t = await startApp({ preset: 'test', applicationName: APP, primary: nodeOptions('primary'), min: 1, max: 4, idleTimeoutMs: 500 });
    try {
      const release = await Promise.all([1, 2, 3, 4].map(() => t.db.primary.withClient(async () => sleep(100))));
      expect(release).toHaveLength(4);
      expect(t.db.primary.pool.totalCount).toBe(4);
      expect(await poolSessions('primary', APP)).toHaveLength(4);
      await waitFor('back to min', async () => t.db.primary.pool.totalCount === 1 && (await poolSessions('primary', APP)).length === 1, 3000);
      expect(t.events.filter((e) => e.type === 'remove' && e.reason === 'idle')).toHaveLength(3);
    } finally {
      await t.close();
    }
  });

  it('arms a TCP keep-alive timer on idle connections with keepAliveMs (on by default), and none with keepAliveMs: 0', async () => {
    const withKeepAlive = await startApp({ preset: 'test', applicationName: APP, primary: nodeOptions('primary'), min: 1, max: 1, keepAliveMs: 5000 });
    const without = await startApp({ preset: 'test', applicationName: APP, primary: nodeOptions('primary'), min: 1, max: 1, keepAliveMs: 0 });
    const byDefault = await startApp({ preset: 'test', applicationName: APP, primary: nodeOptions('primary'), min: 1, max: 1 });
    try {
      const portWith = await withKeepAlive.db.withClient((client) => localPort(client));
      const portWithout = await without.db.withClient((client) => localPort(client));
      const portDefault = await byDefault.db.withClient((client) => localPort(client));
      await sleep(100);
      const armed = tcpTimer(portWith);
      expect(armed.timer).toBe('02');
      expect(armed.seconds).toBeGreaterThan(3);
      expect(armed.seconds).toBeLessThanOrEqual(5);
      expect(tcpTimer(portWithout).timer).toBe('00');
      // The presets' keepAliveMs: 10000.
      const preset = tcpTimer(portDefault);
      expect(preset.timer).toBe('02');
      expect(preset.seconds).toBeGreaterThan(8);
      expect(preset.seconds).toBeLessThanOrEqual(10);
    } finally {
      await withKeepAlive.close();
      await without.close();
      await byDefault.close();
    }
  });
});
