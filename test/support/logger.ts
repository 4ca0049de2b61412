import type { LoggerService } from '@nestjs/common';

// The one Nest logger of the e2e tests and the chaos driver: it keeps every call in memory (for
// "what the user sees" and "no password or secret in any log" checks) and prints nothing unless
// asked to echo.

export interface LogEntry {
  level: 'log' | 'error' | 'warn' | 'debug' | 'verbose' | 'fatal';
  message: string;
  /** The Nest context (the last string argument, e.g. `PoolModule:default`), or `undefined`. */
  context: string;
  /** Every argument after the message (stacks included), joined. */
  params: string;
}

export class CapturingLogger implements LoggerService {
  readonly entries: LogEntry[] = [];
  readonly log = this.#capture('log');
  readonly error = this.#capture('error');
  readonly warn = this.#capture('warn');
  readonly debug = this.#capture('debug');
  readonly verbose = this.#capture('verbose');
  readonly fatal = this.#capture('fatal');

  /** `echo`: also print the first line of each captured message (chaos runs show their progress). */
  constructor(private readonly echo = false) {}

  /** The entries at `log`, `warn`, `error` and `fatal` (what a default Nest logger prints). */
  get lines(): LogEntry[] {
    return this.entries.filter((e) => e.level !== 'debug' && e.level !== 'verbose');
  }

  /** Everything logged, messages and params (stacks included), for secret checks. */
  get text(): string {
    return this.entries.map((e) => `[${e.level}] ${e.message} ${e.params}`).join('\n');
  }

  /** The messages logged at `level`. */
  messages(level: LogEntry['level']): string[] {
    return this.entries.filter((e) => e.level === level).map((e) => e.message);
  }

  /** The warnings whose message contains `fragment`. */
  warnings(fragment = ''): string[] {
    return this.messages('warn').filter((m) => m.includes(fragment));
  }

  #capture(level: LogEntry['level']): (message: unknown, ...params: unknown[]) => void {
    return (message, ...params) => this.#push(level, message, params);
  }

  #push(level: LogEntry['level'], message: unknown, params: unknown[]): void {
    const last = params.at(-1);
    this.entries.push({ level, message: show(message), context: String(last), params: params.map(show).join(' ') });
    if (this.echo && level !== 'debug' && level !== 'verbose') process.stdout.write(`[${level}] ${show(message).split('\n')[0]}\n`);
  }
}

function show(value: unknown): string {
  if (value instanceof Error) return `${value.message}\n${value.stack ?? ''}`;
  if (typeof value === 'string') return value;
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    return String(value);
  }
}
