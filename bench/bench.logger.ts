import type { LoggerService } from '@nestjs/common';

interface Entry {
  level: 'warn' | 'error';
  context: string;
  message: string;
  count: number;
}

/**
 * Keeps what Nest and the library log during a scenario (pool alerts fire by design when 64
 * callers share 10 connections) and prints it as one compact summary instead of mid-table noise.
 */
class BenchLogger implements LoggerService {
  readonly #entries = new Map<string, Entry>();

  log(): void {}
  debug(): void {}
  verbose(): void {}
  fatal(message: unknown, ...rest: unknown[]): void {
    this.error(message, ...rest);
  }

  warn(message: unknown, ...rest: unknown[]): void {
    this.#record('warn', message, rest);
  }

  error(message: unknown, ...rest: unknown[]): void {
    this.#record('error', message, rest);
  }

  #record(level: Entry['level'], message: unknown, rest: unknown[]): void {
    const context = typeof rest.at(-1) === 'string' ? (rest.at(-1) as string) : '';
    const text = message instanceof Error ? (message.stack ?? message.message) : String(message);
    const key = `${level}:${context}:${text.replace(/\d+/g, '#').slice(0, 80)}`;
    const entry = this.#entries.get(key);
    if (entry) entry.count++;
    else this.#entries.set(key, { level, context, message: text, count: 1 });
  }

  /** Lines logged since the last call, one per distinct message. */
  drain(): string[] {
    const lines = [...this.#entries.values()].map((e) => `${e.level} [${e.context}] ${e.message.split('\n')[0]!.slice(0, 160)}${e.count > 1 ? ` (×${e.count})` : ''}`);
    this.#entries.clear();
    return lines;
  }
}

export const benchLogger = new BenchLogger();
