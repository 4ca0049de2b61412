import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import os from 'node:os';
import { pinClientAndServers } from '../bench/bench.affinity.js';

/** The CPUs a process may run on, as /proc prints them ("0", "1", "0-1"). */
function allowed(pid: number): string {
  return /^Cpus_allowed_list:\s*(\S+)$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]!;
}

const canPin = os.cpus().length >= 2 && spawnSync('taskset', ['-V']).status === 0 && spawnSync('ss', ['-V']).status === 0;

// A stand-in for a server: a process listening on a loopback port that has forked a child of its own.
const SERVER = `
const { spawn } = require('node:child_process');
const child = spawn('sleep', ['30'], { stdio: 'ignore' });
const server = require('node:net').createServer().listen(0, '127.0.0.1', () => {
  process.stdout.write(JSON.stringify({ port: server.address().port, child: child.pid }) + '\\n');
});
process.on('SIGTERM', () => { child.kill(); process.exit(0); });
`;

(canPin ? describe : describe.skip)('bench CPU pinning (bench/bench.affinity.ts)', () => {
  let server: ChildProcess | undefined;

  afterEach(() => {
    server?.kill('SIGTERM');
  });

  it('moves the listening process and what it forked to the upper CPUs, this process to the lower ones, restores both and pins again', async () => {
    server = spawn(process.execPath, ['-e', SERVER], { stdio: ['ignore', 'pipe', 'inherit'] });
    const { port, child } = await new Promise<{ port: number; child: number }>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('the stand-in server did not start within 10 s')), 10_000);
      server!.stdout!.once('data', (chunk: Buffer) => {
        clearTimeout(timer);
        resolve(JSON.parse(chunk.toString()) as { port: number; child: number });
      });
    });
    const cores = os.cpus().length;
    const every = `0-${cores - 1}`;
    const split = Math.floor(cores / 2);
    const upper = split === cores - 1 ? String(split) : `${split}-${cores - 1}`;
    const lower = split === 1 ? '0' : `0-${split - 1}`;
    expect([allowed(server.pid!), allowed(child), allowed(process.pid)]).toEqual([every, every, every]);

    const pinning = pinClientAndServers([port]);
    try {
      expect(pinning.description).toBe(`client (Node, its workers) on CPU ${lower}; PostgreSQL servers and PgBouncer on CPU ${upper}`);
      expect(pinning.available).toBe(true);
      expect([allowed(server.pid!), allowed(child), allowed(process.pid)]).toEqual([upper, upper, lower]);
      pinning.restore();
      expect([allowed(server.pid!), allowed(child), allowed(process.pid)]).toEqual([every, every, every]);
      pinning.pin();
      expect([allowed(server.pid!), allowed(child), allowed(process.pid)]).toEqual([upper, upper, lower]);
    } finally {
      pinning.restore();
    }
    expect([allowed(server.pid!), allowed(child), allowed(process.pid)]).toEqual([every, every, every]);
  });

  it('leaves everything as it was, and says why, when nothing listens on the ports', () => {
    const pinning = pinClientAndServers([1]);
    expect(pinning.description).toBe('none (no process found listening on ports 1)');
    expect(pinning.available).toBe(false);
    expect(allowed(process.pid)).toBe(`0-${os.cpus().length - 1}`);
  });
});
