import 'reflect-metadata';
import { Kysely, PostgresDialect } from 'kysely';
import pg from 'pg';
import { benchCluster, rawPoolConfig } from './bench.config.js';
import { closedLoop } from './bench.harness.js';
import { createOursApp } from './bench.module.js';
import type { NodeOptions } from '../lib/index.js';
import { FakeClient } from '../test/support/fake-pg-client.js';

// Runs one side of one workload for a while, for `node --cpu-prof`:
//   node --cpu-prof --cpu-prof-dir=bench/.tmp/prof bench/.tmp/bench/bench.profile.js <query|scope|acquire|read|leak|routed|kysely> <ours|raw> [seconds] [concurrency] [--fake]
// `routed` is what a query builder does on db.routedPool (Kysely's pg dialect): connect(), a
// parameterized statement on the client, release(); raw does the same on a pg.Pool. `kysely` runs
// Kysely itself (selectFrom pg_class where oid = $1) on db.routedPool, or on the raw pg.Pool.
// --fake swaps pg.Client for the unit specs' in-memory stand-in (test/support/fake-pg-client.ts, no
// server), to see the pools' own cost.

const fake = process.argv.includes('--fake');
const [workload = 'query', side = 'ours', seconds = '5', concurrency = '64'] = process.argv.slice(2).filter((a) => a !== '--fake');
const durationMs = Number(seconds) * 1000;
FakeClient.recordStatements = false;
const callers = Number(concurrency);

const ours =
  side === 'ours'
    ? await createOursApp({
        applicationName: 'bench-profile',
        leakDetectionThresholdMs: workload === 'leak' ? 2000 : undefined,
        ...(fake ? { replicas: false, Client: FakeClient as unknown as NodeOptions['Client'] } : {}),
      })
    : undefined;
const raw =
  side === 'raw'
    ? new pg.Pool({
        ...rawPoolConfig(workload === 'read' ? benchCluster.ports.replica1 : benchCluster.ports.primary, 'bench-profile-raw'),
        ...(fake ? { Client: FakeClient as unknown as typeof pg.Client } : {}),
      })
    : undefined;
const noop = () => undefined;
const PK = 'SELECT relname FROM pg_class WHERE oid = $1';
let next = 0;
const oid = () => 1255 + (next++ % 4);
interface Catalog {
  pg_class: { oid: number; relname: string };
}
function kysely(pool: pg.Pool): () => Promise<unknown> {
  const k = new Kysely<Catalog>({ dialect: new PostgresDialect({ pool }) });
  return () => k.selectFrom('pg_class').select('relname').where('oid', '=', oid()).executeTakeFirst();
}
async function routed(pool: { connect(): Promise<pg.PoolClient> }): Promise<unknown> {
  const client = await pool.connect();
  try {
    return await client.query(PK, [oid()]);
  } finally {
    client.release();
  }
}
const ops: Record<string, () => Promise<unknown>> = ours
  ? {
      query: () => ours.db.query('SELECT 1'),
      leak: () => ours.db.query('SELECT 1'),
      scope: () => ours.db.scope(() => ours.db.query('SELECT 1')),
      acquire: () => ours.db.withClient(noop),
      read: () => ours.reads.selectOne(),
      routed: () => routed(ours.db.routedPool),
      kysely: kysely(ours.db.routedPool),
    }
  : {
      query: () => raw!.query('SELECT 1'),
      leak: () => raw!.query('SELECT 1'),
      scope: () => raw!.query('SELECT 1'),
      acquire: async () => (await raw!.connect()).release(),
      read: () => raw!.query('SELECT 1'),
      routed: () => routed(raw!),
      kysely: kysely(raw!),
    };
const op = ops[workload];
if (op === undefined) throw new Error(`Expected a workload (query, scope, acquire, read, leak, routed or kysely), got ${JSON.stringify(workload)}.`);
await closedLoop(op, callers, 1000);
const cpu = process.cpuUsage();
const result = await closedLoop(op, callers, durationMs);
const used = process.cpuUsage(cpu);
console.log(`${workload} ${side} c=${callers}: ${result.rate.toFixed(0)} ops/s, ${((used.user + used.system) / result.ops).toFixed(2)} µs CPU per op (user ${(used.user / result.ops).toFixed(2)})`);
await ours?.app.close();
await raw?.end();
