#!/usr/bin/env node
// Optional, not part of `npm test`: runs node-postgres's own pg-pool test files against the pools
// this module hands out, and prints how many pass. Each `new Pool(config)` of those files builds the
// pool the way `PoolModule.forRoot({ primary: config })` builds it (connection fields from the PG*
// environment, as pg reads them, when `config` has none), and hands out either its `pg.Pool` face
// (`@InjectPool()`, mode `facade`) or `db.routedPool` (mode `routed`). The constructor cannot wait
// for a start-up, so the pool is `lazy` (no warm-up; the preset's `min` is refilled after first use).
//
//   npm run build
//   node scripts/pg-pool-suite.mjs <copy of node-postgres/packages/pg-pool/test> [facade] [routed] [--verbose]
//
// The test files are not part of this repository: take them from node-postgres at the tag matching
// the installed pg-pool (node_modules/pg-pool/package.json). Their own dev dependencies (mocha,
// expect.js, co, lodash, pg-cursor) are installed once into node_modules/.cache. The database is the
// local test cluster's primary (PGPOOLS_CLUSTER_OFFSET honoured) unless PGHOST / PGPORT are set.
// docs/pg-pool-compat.md lists every difference the remaining failures come from.
import { spawn, spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const args = process.argv.slice(2);
const verbose = args.includes('--verbose');
const testDir = args.find((a) => !a.startsWith('--') && a !== 'facade' && a !== 'routed');
const modes = args.filter((a) => a === 'facade' || a === 'routed');
if (testDir === undefined || !existsSync(path.join(testDir, 'index.js'))) {
  console.error('Usage: node scripts/pg-pool-suite.mjs <node-postgres/packages/pg-pool/test> [facade] [routed] [--verbose]');
  console.error(`Expected a folder holding pg-pool's test files (index.js, ending.js, …), got ${JSON.stringify(testDir ?? '')}.`);
  process.exit(2);
}
if (modes.length === 0) modes.push('facade', 'routed');

const dist = path.join(root, 'dist', 'cjs');
if (!existsSync(path.join(dist, 'index.js'))) {
  console.error('Cannot find dist/cjs: run `npm run build` first.');
  process.exit(2);
}

// The suite's own dev dependencies, installed once.
const deps = path.join(root, 'node_modules', '.cache', 'nestjs-pg-pools', 'pg-pool-suite');
if (!existsSync(path.join(deps, 'node_modules', 'mocha'))) {
  mkdirSync(deps, { recursive: true });
  writeFileSync(path.join(deps, 'package.json'), '{ "private": true }\n');
  const npm = spawnSync('npm', ['install', '--no-save', '--no-package-lock', '--no-audit', '--no-fund', 'mocha@11', 'expect.js@0.3.1', 'co@4.6.0', 'lodash@4', 'pg-cursor@2', 'bluebird@3.7.2'], {
    cwd: deps,
    stdio: 'inherit',
  });
  if (npm.status !== 0) process.exit(npm.status ?? 1);
}

// The test cluster's primary, as pg's PG* variables.
function clusterEnv() {
  const env = {};
  for (const line of readFileSync(path.join(root, 'scripts', 'cluster.env'), 'utf8').split('\n')) {
    const m = /^([A-Z0-9_]+)=(.*)$/.exec(line.trim());
    if (m) env[m[1]] = m[2];
  }
  const offset = Number(process.env.PGPOOLS_CLUSTER_OFFSET ?? '0') * 10;
  return {
    PGHOST: process.env.PGHOST ?? env.PG_HOST,
    PGPORT: process.env.PGPORT ?? String(Number(env.PG_PRIMARY_PORT) + offset),
    PGUSER: process.env.PGUSER ?? env.PG_USER,
    PGPASSWORD: process.env.PGPASSWORD ?? env.PG_PASSWORD,
    PGDATABASE: process.env.PGDATABASE ?? env.PG_DATABASE,
  };
}

const shim = (mode) => `'use strict'
// new Pool(config) as PoolModule.forRoot({ primary: config }) builds it (${mode}).
const pg = require(${JSON.stringify(path.join(root, 'node_modules', 'pg'))})
const { resolveOptions } = require(${JSON.stringify(path.join(dist, 'config', 'resolve-options.js'))})
const { PoolCluster } = require(${JSON.stringify(path.join(dist, 'core', 'pool-cluster.js'))})
const { RoutedPool } = require(${JSON.stringify(path.join(dist, 'routing', 'routed-pool.js'))})
const CONNECTION = ['host', 'port', 'user', 'password', 'database', 'connectionString']
let databases = 0
function Pool(config = {}) {
  const primary = { ...config }
  if (!CONNECTION.some((k) => primary[k] !== undefined)) {
    const e = process.env
    Object.assign(primary, { host: e.PGHOST, port: Number(e.PGPORT), user: e.PGUSER, password: e.PGPASSWORD, database: e.PGDATABASE })
  }
  const cluster = new PoolCluster(resolveOptions({ primary, lazy: true, sizingAdvisor: false, env: {} }, 'pg-pool-suite-' + ++databases))
  return ${mode === 'routed' ? 'new RoutedPool(cluster)' : 'cluster.primary.pool'}
}
Pool.Pool = Pool
module.exports = Pool
`;

function runFile(dir, file, env) {
  return new Promise((resolve) => {
    const mocha = path.join(deps, 'node_modules', 'mocha', 'bin', 'mocha.js');
    const child = spawn(process.execPath, [mocha, '--reporter', 'json-stream', '--timeout', '10000', '--exit', path.join(dir, 'test', 'setup.js'), path.join(dir, 'test', file)], {
      cwd: dir,
      env: { ...process.env, ...env, NODE_PATH: [path.join(root, 'node_modules'), path.join(deps, 'node_modules')].join(path.delimiter) },
    });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => verbose && process.stderr.write(d));
    const timer = setTimeout(() => child.kill('SIGKILL'), 120_000);
    child.on('close', () => {
      clearTimeout(timer);
      let total = 0;
      const passed = [];
      const failed = [];
      for (const line of out.split('\n')) {
        if (!line.startsWith('[')) continue;
        try {
          const [kind, data] = JSON.parse(line);
          if (kind === 'start') total = data.total;
          if (kind === 'pass') passed.push(data.fullTitle);
          if (kind === 'fail') failed.push(`${data.fullTitle}: ${String(data.err).split('\n')[0]}`);
        } catch {
          /* not a reporter line */
        }
      }
      resolve({ total: Math.max(total, passed.length + failed.length), passed, failed });
    });
  });
}

const env = clusterEnv();
const files = readdirSync(testDir).filter((f) => f.endsWith('.js') && f !== 'setup.js').sort();
for (const mode of modes) {
  const dir = mkdtempSync(path.join(os.tmpdir(), `pg-pool-suite-${mode}-`));
  try {
    cpSync(testDir, path.join(dir, 'test'), { recursive: true });
    writeFileSync(path.join(dir, 'index.js'), shim(mode));
    writeFileSync(path.join(dir, 'package.json'), '{ "name": "pg-pool", "private": true }\n');
    let passes = 0;
    let total = 0;
    console.log(`\n${mode === 'routed' ? 'db.routedPool' : '@InjectPool() (pg.Pool face)'}:`);
    for (const file of files) {
      const r = await runFile(dir, file, env);
      passes += r.passed.length;
      total += r.total;
      console.log(`  ${file.padEnd(24)} ${String(r.passed.length).padStart(3)} / ${r.total}`);
      if (verbose) for (const f of [...r.failed, ...Array(Math.max(0, r.total - r.passed.length - r.failed.length)).fill('(not run: the file stopped)')]) console.log(`      ✕ ${f}`);
    }
    console.log(`  ${'total'.padEnd(24)} ${String(passes).padStart(3)} / ${total}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
