import { spawn, spawnSync } from 'node:child_process';
import path from 'node:path';
import { connectionString, repoRoot } from '../support/cluster.js';
import { ServerFiller } from '../support/server-slots.js';

// An application that cannot reach its database at start exits non-zero with the error printed,
// after the start-up retries (the back-off between them keeps the process alive); never 0. A real
// child process runs a default Nest main (test/fixtures/startup-failure/main.mjs) over the built
// library (dist/, built here with tsconfig.build.json) with no replicas.

const MAIN = path.join(repoRoot, 'test', 'fixtures', 'startup-failure', 'main.mjs');
const RETRIES = { retryAttempts: 3, retryDelayMs: 300 };
/** 300 + 600 ms of back-off, each at least 80% of it (jitter). */
const MIN_BACKOFF_MS = 0.8 * (300 + 600);

interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  ms: number;
}

function runMain(options: object, timeoutMs = 20_000): Promise<Exit> {
  const started = Date.now();
  const child = spawn(process.execPath, [MAIN], { cwd: repoRoot, env: { ...process.env, POOL_OPTIONS: JSON.stringify(options) }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`the app did not exit within ${timeoutMs}ms; stdout: ${stdout}; stderr: ${stderr}`));
    }, timeoutMs);
    child.once('error', reject);
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr, ms: Date.now() - started });
    });
  });
}

/** Nest prints its logs on stdout and uncaught errors on stderr: the operator reads both. */
const printed = (e: Exit) => `${e.stdout}\n${e.stderr}`;

describe('start-up failure is loud (a real `node main.mjs` child process, no replicas)', () => {
  beforeAll(() => {
    const build = spawnSync(process.execPath, [path.join(repoRoot, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.build.json'], { cwd: repoRoot, encoding: 'utf8' });
    if (build.status !== 0) throw new Error(`building the library failed: ${build.stdout}${build.stderr}`);
  }, 180_000);

  it('port refused: exits non-zero with the error, after retrying within the budget', async () => {
    const exit = await runMain({ primary: { connectionString: `postgres://app:secret@127.0.0.1:1/app` }, ...RETRIES });
    expect({ code: exit.code, signal: exit.signal }).not.toEqual({ code: 0, signal: null });
    expect(exit.code === null || exit.code !== 0).toBe(true);
    expect(printed(exit)).toMatch(/PoolConnectionError|Cannot connect to "default\/primary" at 127\.0\.0\.1:1 after 3 attempt\(s\)/);
    expect(printed(exit)).toMatch(/ECONNREFUSED/);
    expect(printed(exit)).not.toMatch(/listening/);
    expect(exit.ms).toBeGreaterThanOrEqual(MIN_BACKOFF_MS);
  }, 30_000);

  it('wrong password: exits non-zero naming the authentication failure, never printing the password', async () => {
    const exit = await runMain({ primary: { connectionString: connectionString('primary', { password: 'wrong-pass-xyz' }) }, ...RETRIES });
    expect(exit.code === null || exit.code !== 0).toBe(true);
    expect(printed(exit)).toMatch(/password authentication failed/);
    expect(printed(exit)).not.toMatch(/wrong-pass-xyz/);
  }, 30_000);

  it('server full: exits non-zero naming the server limit', async () => {
    const filler = new ServerFiller();
    try {
      await filler.fill();
      const exit = await runMain({ primary: { connectionString: connectionString('primary') }, ...RETRIES });
      expect(exit.code === null || exit.code !== 0).toBe(true);
      expect(printed(exit)).toMatch(/no connection slot left|too many clients/);
    } finally {
      await filler.free();
    }
  }, 60_000);
});
