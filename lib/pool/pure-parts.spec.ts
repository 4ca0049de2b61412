import pg from 'pg';
import { AcquireQueue } from './acquire-queue.js';
import { CircuitBreaker } from './circuit-breaker.js';
import { ConnectionBag } from './connection-bag.js';
import { sweep, sweepPeriodMs } from './housekeeper.js';
import { PooledConnection } from './pooled-connection.js';
import { releaseAction } from './release-policy.js';

// The pool's pieces that need no connection: bag order, queue order and deadlines, breaker
// states, the housekeeper's sweep and the release rules.

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function entry(generation = 0): PooledConnection {
  return new PooledConnection({ host: '127.0.0.1', port: 1 }, pg.Client, generation, () => undefined);
}

describe('ConnectionBag', () => {
  it('lends the most recently pooled connection first and lists idle ones longest-idle first', () => {
    const bag = new ConnectionBag<string>();
    for (const c of ['a', 'b', 'c']) {
      bag.add(c);
      bag.put(c);
    }
    expect(bag.idleItems()).toEqual(['a', 'b', 'c']);
    expect(bag.take()).toBe('c');
    expect(bag.total).toBe(3);
    expect(bag.idle).toBe(2);
    expect(bag.takeIdle('a')).toBe(true);
    expect(bag.takeIdle('a')).toBe(false);
    expect(bag.remove('b')).toBe(true);
    expect(bag.remove('b')).toBe(false);
    expect(bag.items().sort()).toEqual(['a', 'c']);
    expect(bag.idle).toBe(0);
  });

  it('requite gives a connection to the oldest waiter, else to the idle stack; waiters fail together', () => {
    const bag = new ConnectionBag<string>();
    const got: string[] = [];
    bag.add('a');
    bag.wait(performance.now() + 60_000, (_err, item) => got.push(`1:${item}`));
    bag.wait(performance.now() + 60_000, (_err, item) => got.push(`2:${item}`));
    expect(bag.waiting).toBe(2);
    expect(bag.requite('a')).toBe(false);
    expect(got).toEqual(['1:a']);
    expect(bag.nextWaiter()).toBeDefined();
    expect(bag.requite('a')).toBe(true);
    expect(bag.idle).toBe(1);
    const failed: unknown[] = [];
    bag.wait(performance.now() + 60_000, (err) => failed.push(err?.message));
    bag.rejectWaiters(new Error('ended'));
    expect(failed).toEqual(['ended']);
    expect(bag.waiting).toBe(0);
  });
});

describe('AcquireQueue', () => {
  it('serves waiters first in, first out', () => {
    const queue = new AcquireQueue<string>(() => new Error('expired'));
    const served: string[] = [];
    for (const name of ['w1', 'w2', 'w3']) queue.push(performance.now() + 10_000, (_err, item) => served.push(`${name}:${item}`));
    queue.shift()!.callback(undefined, 'x');
    queue.shift()!.callback(undefined, 'y');
    expect(served).toEqual(['w1:x', 'w2:y']);
    expect(queue.length).toBe(1);
    queue.rejectAll(new Error('ended'));
    expect(queue.length).toBe(0);
  });

  it('fails each waiter at its own deadline with one timer, in order', async () => {
    const queue = new AcquireQueue<string>((w) => new Error(`expired ${w.deadline}`));
    const t0 = performance.now();
    // Each callback records when it ran, whether it got the error, and how many waiters were left then.
    const settled = (deadline: number) =>
      new Promise<{ at: number; failed: boolean; left: number }>((resolve) =>
        queue.push(t0 + deadline, (err) => resolve({ at: performance.now() - t0, failed: err !== undefined, left: queue.length })),
      );
    const first = settled(20);
    const second = settled(60);
    const a = await first;
    expect(a).toMatchObject({ failed: true, left: 1 });
    expect(a.at).toBeGreaterThanOrEqual(19);
    const b = await second;
    expect(b).toMatchObject({ failed: true, left: 0 });
    expect(b.at).toBeGreaterThanOrEqual(59);
  });
});

describe('CircuitBreaker', () => {
  it('opens at the threshold, fails fast, lets one trial through when half-open, and closes on success', async () => {
    const events: string[] = [];
    const breaker = new CircuitBreaker(() => ({ failureThreshold: 2, resetTimeoutMs: 30 }), {
      opened: (failures, _retryAt, last, reopened) => events.push(`open ${failures} ${last} ${reopened}`),
      closed: () => events.push('closed'),
    });
    breaker.failure('a');
    expect(breaker.state()).toBe('closed');
    expect(breaker.clean).toBe(false);
    breaker.failure('b');
    expect(breaker.state()).toBe('open');
    const retryAt = breaker.retryAt;
    expect(breaker.admit()).toBe(false);
    // Calls under way when it opened fail too: one opening, one event, the retry time unchanged.
    breaker.failure('late 1');
    breaker.failure('late 2');
    expect(breaker.retryAt).toBe(retryAt);
    await sleep(40);
    expect(breaker.state()).toBe('half-open');
    expect(breaker.admit()).toBe(true);
    expect(breaker.admit()).toBe(false);
    breaker.failure('c');
    expect(breaker.state()).toBe('open');
    await sleep(40);
    expect(breaker.admit()).toBe(true);
    breaker.success();
    expect(breaker.state()).toBe('closed');
    expect(breaker.clean).toBe(true);
    expect(events).toEqual(['open 2 b false', 'open 5 c true', 'closed']);
  });
});

describe('housekeeper sweep', () => {
  const settings = { min: 1, idleTimeoutMs: 1000, queryTimeoutMs: 500 };

  it('retires idle connections past their lifetime, and idle ones above min past idleTimeoutMs, longest idle first', () => {
    const now = 100_000;
    const expired = entry();
    expired.expiresAt = now - 1;
    const old = entry();
    old.lastReleasedAt = now - 5000;
    const older = entry();
    older.lastReleasedAt = now - 9000;
    const fresh = entry();
    fresh.lastReleasedAt = now - 10;
    const result = sweep([expired, older, old, fresh], [expired, older, old, fresh], 4, settings, now, 0);
    // 4 open, min 1: the expired one and the two idle ones go; the fresh one stays.
    expect(result.retire).toEqual([
      [expired, 'lifetime'],
      [older, 'idle'],
      [old, 'idle'],
    ]);
  });

  it('keeps min connections however long they idled, and reports statements past the deadline', () => {
    const a = entry();
    const b = entry();
    b.busySince = 1;
    const result = sweep([a], [a, b], 2, { ...settings, min: 2 }, 1_000_000, 1000);
    expect(result.retire).toEqual([]);
    expect(result.overdue).toEqual([b]);
    expect(sweep([], [b], 1, { ...settings, queryTimeoutMs: 0 }, 0, 1_000_000).overdue).toEqual([]);
  });

  it('runs at a quarter of the shortest period it enforces, between 50 ms and 1 s', () => {
    expect(sweepPeriodMs({ min: 0, idleTimeoutMs: 0, queryTimeoutMs: 0, maxLifetimeMs: 0 })).toBe(1000);
    expect(sweepPeriodMs({ min: 0, idleTimeoutMs: 1000, queryTimeoutMs: 65_000, maxLifetimeMs: 0 })).toBe(250);
    expect(sweepPeriodMs({ min: 0, idleTimeoutMs: 100, queryTimeoutMs: 0, maxLifetimeMs: 0 })).toBe(50);
  });
});

describe('release rules', () => {
  const ctx = { generation: 0, maxUses: 10, primary: true, now: 1000 };
  const status = (conn: PooledConnection, tx: string) => {
    (conn.client as unknown as { getTransactionStatus: () => string }).getTransactionStatus = () => tx;
    return conn;
  };

  it('destroys a connection only for an error that came from it', () => {
    const conn = status(entry(), 'I');
    const own = Object.assign(new Error('reset'), { code: 'ECONNRESET' });
    expect(releaseAction(conn, own, ctx)).toEqual({ kind: 'pool' });
    conn.lastError = own;
    expect(releaseAction(conn, own, ctx)).toMatchObject({ kind: 'destroy', connectionError: true });
    expect(releaseAction(conn, new Error('wrapped', { cause: own }), ctx)).toMatchObject({ kind: 'destroy' });
    const broken = status(entry(), 'I');
    broken.markBroken(new Error('Connection terminated unexpectedly'));
    expect(releaseAction(broken, undefined, ctx)).toMatchObject({ kind: 'destroy', reason: 'error' });
  });

  it('checks for a demoted primary on its own 25006, rolls back open transactions, retires stale ones', () => {
    const conn = status(entry(), 'I');
    const readOnly = Object.assign(new Error('read-only'), { code: '25006' });
    conn.lastError = readOnly;
    expect(releaseAction(conn, readOnly, ctx)).toEqual({ kind: 'check-demoted' });
    expect(releaseAction(conn, readOnly, { ...ctx, primary: false })).toEqual({ kind: 'pool' });
    expect(releaseAction(status(entry(), 'T'), undefined, ctx)).toEqual({ kind: 'rollback' });
    expect(releaseAction(status(entry(), 'E'), undefined, ctx)).toEqual({ kind: 'rollback' });
    expect(releaseAction(status(entry(), 'I'), undefined, { ...ctx, generation: 1 })).toEqual({ kind: 'retire', reason: 'evicted' });
    const expired = status(entry(), 'I');
    expired.expiresAt = 999;
    expect(releaseAction(expired, undefined, ctx)).toEqual({ kind: 'retire', reason: 'lifetime' });
    const worn = status(entry(), 'I');
    worn.uses = 10;
    expect(releaseAction(worn, undefined, ctx)).toEqual({ kind: 'retire', reason: 'max-uses' });
  });
});
