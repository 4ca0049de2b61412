import { jest } from '@jest/globals';
import type { ResolvedOptions } from '../config/resolve-options.js';
import type { NodePool } from '../pool/node-pool.js';
import type { PoolEvent } from '../pool.events.js';
import type { LagMonitor } from './lag-monitor.js';
import { ReplicaSet, type ReplicaSetHost } from './replica-set.js';

// The replica set on its own, over fake nodes: which nodes read, bans (once, logged and emitted
// once, extended by a later failure, none after close) and an endpoint's second chance.

const routing = {
  strategy: 'round-robin',
  replicaBanMs: 60_000,
  lagCheckIntervalMs: 1000,
  maxReplicationLagMs: 0,
  maxReplicationLagBytes: 0,
} as ResolvedOptions['routing'];

function fakeNode(name: string, answers: () => Promise<unknown> = () => Promise.resolve({ rows: [] }), endpoint = false) {
  return {
    name,
    available: true,
    config: { endpoint, address: `127.0.0.1:${name.length}`, role: name === 'primary' ? 'primary' : 'replica' },
    counters: { bans: 0 },
    pauseRefill: jest.fn(),
    resumeRefill: jest.fn(),
    evictAll: jest.fn(),
    systemQuery: jest.fn(answers),
  };
}

function makeSet(nodes: ReturnType<typeof fakeNode>[]) {
  const events: PoolEvent[] = [];
  const warnings: string[] = [];
  const host = {
    name: 'default',
    closed: false,
    logger: { log: () => undefined, warn: (message: string) => void warnings.push(message) },
    emitting: true,
    emit: (event: PoolEvent) => void events.push(event),
    scrub: (message: string) => message,
  };
  const lag = { timeoutMs: 1000 } as LagMonitor;
  const set = new ReplicaSet(host as unknown as ReplicaSetHost, nodes as unknown as NodePool[], routing, lag);
  return { set, host, events, warnings };
}

const refused = () => Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:2'), { code: 'ECONNREFUSED' });

describe('ReplicaSet', () => {
  let close: (() => void) | undefined;
  afterEach(() => close?.());

  it('reads from every configured replica at first, then from the nodes the topology names; a joiner has no lag figure yet', () => {
    const [primary, r1, r2] = [fakeNode('primary'), fakeNode('r1'), fakeNode('r2')];
    const { set } = makeSet([primary, r1, r2]);
    close = () => set.close();
    expect(set.readers.map((r) => r.node.name)).toEqual(['r1', 'r2']);
    const [p, s1] = [set.all[0]!, set.all[1]!];
    p.lagMs = 10;
    s1.lagMs = 20;
    set.follow((node) => node.name !== 'r2');
    expect(set.readers.map((r) => r.node.name)).toEqual(['primary', 'r1']);
    expect(p.lagMs).toBeUndefined();
    expect(s1.lagMs).toBe(20);
    expect(set.readerOf(r2 as unknown as NodePool)).toBeUndefined();
    expect(set.readerOf(r1 as unknown as NodePool)).toBe(s1);
  });

  it('bans a replica once: out of rotation, refill paused, connections closed, logged and emitted once; a later failure extends it', () => {
    const [primary, r1, r2] = [fakeNode('primary'), fakeNode('r1'), fakeNode('r2')];
    const { set, events, warnings } = makeSet([primary, r1, r2]);
    close = () => set.close();
    const banned = set.readers[0]!;
    set.ban(banned, refused());
    expect(banned.bannedUntil).toBeGreaterThan(Date.now());
    expect(banned.banReason).toBe('connect ECONNREFUSED 127.0.0.1:2');
    expect(set.pick(undefined, undefined)?.node.name).toBe('r2');
    expect(set.pick(undefined, undefined)?.node.name).toBe('r2');
    const until = banned.bannedUntil;
    set.ban(banned, new Error('again'));
    expect(banned.bannedUntil).toBeGreaterThanOrEqual(until);
    expect(banned.banReason).toBe('again');
    expect(r1.counters.bans).toBe(1);
    expect(r1.pauseRefill).toHaveBeenCalledTimes(1);
    expect(r1.evictAll).toHaveBeenCalledTimes(1);
    expect(warnings).toEqual(['Replica "default/r1" (127.0.0.1:2) banned for 60000ms: connect ECONNREFUSED 127.0.0.1:2']);
    expect(events).toEqual([expect.objectContaining({ type: 'replica-banned', database: 'default', node: 'r1', reason: 'connect ECONNREFUSED 127.0.0.1:2' })]);
  });

  it('bans nothing once the cluster is closed', () => {
    const [primary, r1] = [fakeNode('primary'), fakeNode('r1')];
    const { set, host } = makeSet([primary, r1]);
    close = () => set.close();
    host.closed = true;
    set.ban(set.readers[0]!, refused());
    expect(set.readers[0]!.bannedUntil).toBe(0);
  });

  it('keeps an endpoint in rotation when a new connection through it answers, and bans it (at most 1 s) when that fails too', async () => {
    let answer: () => Promise<unknown> = () => Promise.resolve({ rows: [] });
    const endpoint = fakeNode('reader', () => answer(), true);
    const { set } = makeSet([fakeNode('primary'), endpoint]);
    close = () => set.close();
    const r = set.readers[0]!;
    set.ban(r, refused());
    await new Promise((resolve) => setImmediate(resolve));
    expect(r.bannedUntil).toBe(0);
    answer = () => Promise.reject(refused());
    const before = Date.now();
    set.ban(r, refused());
    await new Promise((resolve) => setImmediate(resolve));
    expect(r.bannedUntil).toBeGreaterThan(before);
    expect(r.bannedUntil).toBeLessThanOrEqual(Date.now() + 1000);
  });
});
