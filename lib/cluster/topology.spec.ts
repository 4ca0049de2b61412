import type { NodePool } from '../pool/node-pool.js';
import { PrimaryUnavailableError } from '../pool.exceptions.js';
import type { PoolEvent } from '../pool.events.js';
import { Topology, type TopologyHost } from './topology.js';

type Answer = { recovering: boolean; timeline: number } | 'down';

/** A node that answers the role check as told; records setRole calls. */
function fakeNode(name: string, answer: Answer) {
  const node = {
    name,
    role: 'replica' as 'primary' | 'replica',
    config: { address: `127.0.0.1:${name.length}` },
    answer,
    roles: [] as string[],
    setRole(role: 'primary' | 'replica') {
      node.role = role;
      node.roles.push(role);
    },
    monitorQuery() {
      const a = node.answer;
      if (a === 'down') return Promise.reject(Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }));
      return Promise.resolve({ rows: [{ recovering: a.recovering, checkpoint_timeline: a.timeline, wal_timeline: a.recovering ? null : a.timeline }] });
    },
  };
  return node;
}

function setup(answers: Answer[], discoverRoles = true) {
  const nodes = answers.map((a, i) => fakeNode(i === 0 ? 'primary' : `replica-${i}`, a));
  nodes[0]!.role = 'primary';
  const events: PoolEvent[] = [];
  let changes = 0;
  const host: TopologyHost = {
    name: 'default',
    emitting: true,
    emit: (e) => events.push(e),
    warn: () => undefined,
    log: () => undefined,
    scrub: (m) => m,
    topologyChanged: () => void changes++,
    idle: () => false,
  };
  const options = { discoverRoles, checkIntervalMs: 1000, checkTimeoutMs: 100, failoverTimeoutMs: 30_000, holdWritesMs: 0 };
  const topology = new Topology(nodes[0] as unknown as NodePool, nodes.slice(1) as unknown as NodePool[], options, host);
  const pool = (i: number) => nodes[i] as unknown as NodePool;
  return { nodes, topology, events, pool, changes: () => changes };
}

const primary = (timeline = 1): Answer => ({ recovering: false, timeline });
const standby = (timeline = 1): Answer => ({ recovering: true, timeline });

describe('Topology', () => {
  it('keeps the configured roles when the nodes confirm them', async () => {
    const t = setup([primary(), standby(), standby()]);
    await t.topology.check();
    expect(t.topology.writer).toBe(t.pool(0));
    expect(t.topology.isReader(t.pool(1)) && t.topology.isReader(t.pool(2))).toBe(true);
    expect(t.events).toEqual([]);
    expect(t.nodes.every((n) => n.roles.length === 0)).toBe(true);
  });

  it('fails writes fast with PrimaryUnavailableError while no node answers as the primary', async () => {
    const t = setup(['down', standby(), standby()]);
    await t.topology.check();
    expect(() => t.topology.requireWriter()).toThrow(PrimaryUnavailableError);
    const err = t.topology.unavailable();
    expect(err.tried.map((c) => `${c.node}: ${c.state}`)).toEqual(['primary: connect ECONNREFUSED', 'replica-1: in recovery', 'replica-2: in recovery']);
    expect(err.retryAt.getTime()).toBeGreaterThanOrEqual(Date.now() - 5);
    expect(err.message).toMatch(/^Cannot run a write on database "default" because no node answers as the primary/);
  });

  it('moves the writes to a promoted replica; the old primary joins the replicas once it answers as a standby', async () => {
    const t = setup(['down', primary(2), standby()]);
    await t.topology.check();
    expect(t.topology.requireWriter()).toBe(t.pool(1));
    expect(t.nodes[1]!.roles).toEqual(['primary']);
    expect(t.topology.roleOf(t.pool(0))).toBe('unknown');
    expect(t.topology.isReader(t.pool(1))).toBe(false);
    expect(t.events.find((e) => e.type === 'primary-changed')).toMatchObject({ node: 'replica-1', previous: 'primary', timeline: 2 });
    t.nodes[0]!.answer = standby(2);
    await t.topology.check();
    expect(t.topology.isReader(t.pool(0))).toBe(true);
    expect(t.events.find((e) => e.type === 'node-role-changed' && e.node === 'primary' && e.to === 'replica')).toBeDefined();
  });

  it('fences the primary on the older timeline in a split brain; never both take writes', async () => {
    const t = setup(['down', primary(2), standby()]);
    await t.topology.check();
    t.nodes[0]!.answer = primary(1);
    await t.topology.check();
    expect(t.topology.writer).toBe(t.pool(1));
    expect(t.topology.roleOf(t.pool(0))).toBe('fenced');
    expect(t.topology.isReader(t.pool(0))).toBe(false);
    expect(t.nodes[0]!.role).toBe('replica');
    expect(t.topology.snapshot().fenced).toEqual(['primary']);
    expect(t.events.filter((e) => e.type === 'split-brain')).toEqual([
      expect.objectContaining({ node: 'primary', writer: 'replica-1', primaries: [{ node: 'primary', timeline: 1 }, { node: 'replica-1', timeline: 2 }] }),
    ]);
    // The newer timeline wins even over the current write node.
    const u = setup([primary(1), primary(3), standby()]);
    await u.topology.check();
    expect(u.topology.writer).toBe(u.pool(1));
    expect(u.topology.roleOf(u.pool(0))).toBe('fenced');
  });

  it('with discoverRoles false pins the configured roles and checks nothing', async () => {
    const t = setup(['down', primary(2), standby()], false);
    await t.topology.check();
    expect(t.topology.requireWriter()).toBe(t.pool(0));
    expect(t.events).toEqual([]);
  });
});
