import { fork, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const benchDir = path.dirname(fileURLToPath(import.meta.url));
const workersDir = path.join(benchDir, 'workers');

/** `--import` this in a worker that loads the sample app (maps `nestjs-pg-pools` to the compiled lib). */
export const loaderPath = path.join(benchDir, 'bench.loader.js');

export interface ChildOptions {
  execArgv?: string[];
  /** The Node.js binary to run the worker with (the bench's own by default). */
  execPath?: string;
  /** Added to the parent's environment. */
  env?: Record<string, string>;
}

interface Message {
  cmd: string;
  [key: string]: unknown;
}

/** A worker process driven over IPC: one request at a time, every wait bounded. */
export class BenchChild {
  readonly #child: ChildProcess;
  readonly #exited: Promise<number | null>;
  #pending: { resolve: (m: Message) => void; reject: (e: Error) => void } | undefined;
  #stderr = '';

  private constructor(readonly name: string, worker: string, args: string[], options: ChildOptions) {
    this.#child = fork(path.join(workersDir, worker), args, {
      execArgv: options.execArgv ?? [],
      ...(options.execPath === undefined ? {} : { execPath: options.execPath }),
      env: { ...process.env, ...options.env },
      stdio: ['ignore', 'inherit', 'pipe', 'ipc'],
    });
    this.#child.stderr!.on('data', (chunk: Buffer) => {
      this.#stderr = (this.#stderr + chunk.toString()).slice(-4000);
    });
    this.#child.on('message', (m: Message) => {
      const pending = this.#pending;
      this.#pending = undefined;
      if (m.cmd === 'failed') pending?.reject(new Error(`${this.name} failed: ${String(m.message)}`));
      else pending?.resolve(m);
    });
    this.#exited = new Promise((resolve) => {
      this.#child.on('exit', (code) => {
        this.#pending?.reject(new Error(`${this.name} exited with code ${code}. ${this.#stderr.trim()}`));
        this.#pending = undefined;
        resolve(code);
      });
    });
  }

  /** Starts `workers/<worker>` and waits for its `ready` message. */
  static async start(name: string, worker: string, args: string[], timeoutMs: number, options: ChildOptions = {}): Promise<{ child: BenchChild; ready: Message }> {
    const child = new BenchChild(name, worker, args, options);
    try {
      const ready = await child.#wait(timeoutMs, 'start');
      return { child, ready };
    } catch (err) {
      child.kill();
      throw err;
    }
  }

  /** Sends `message` and waits for the next reply. */
  request(message: Message, timeoutMs: number): Promise<Message> {
    const reply = this.#wait(timeoutMs, message.cmd);
    this.#child.send(message);
    return reply;
  }

  #wait(timeoutMs: number, what: string): Promise<Message> {
    return new Promise<Message>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending = undefined;
        reject(new Error(`Cannot finish "${what}" in ${this.name} because it took longer than ${timeoutMs}ms.`));
      }, timeoutMs);
      timer.unref();
      this.#pending = {
        resolve: (m) => {
          clearTimeout(timer);
          resolve(m);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      };
    });
  }

  /** Asks the worker to close its app and exit; kills it when it does not within `timeoutMs`. */
  async stop(timeoutMs = 15_000): Promise<void> {
    if (this.#child.exitCode !== null || this.#child.signalCode !== null) return;
    if (this.#child.connected) this.#child.send({ cmd: 'stop' });
    const timer = setTimeout(() => this.kill(), timeoutMs);
    timer.unref();
    await this.#exited;
    clearTimeout(timer);
  }

  kill(): void {
    if (this.#child.exitCode === null && this.#child.signalCode === null) this.#child.kill('SIGKILL');
  }
}
