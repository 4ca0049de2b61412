import { isSubmittable, statementKind } from './statement-kind.js';
import type { CompiledSessionContext } from './session-context.js';

type AnyFn = (...args: unknown[]) => unknown;
type Query = (...args: unknown[]) => unknown;

/** What the context-aware `query` of a lent client needs from the connection under it. */
export interface ContextTarget {
  /** False once the client was given back (the caller's `query` then throws `ClientReleasedError`). */
  live(): boolean;
  /** `'I'` outside a transaction, `'T'` / `'E'` inside one. */
  transactionStatus(): string | null;
  /** Sends a statement of the library (not the caller's). */
  send(text: string, values: readonly unknown[] | undefined): Promise<unknown>;
}

/**
 * `query` of a client lent in a scope with a session context: every statement runs inside a
 * transaction that has the context applied (`set_config(…, true)`). A statement outside a
 * transaction runs as `BEGIN; <context>; statement; COMMIT` (ROLLBACK when it fails); the caller's
 * own `BEGIN` gets the context right after it, and what follows runs in that transaction as sent.
 * A cursor or stream sent outside a transaction gets a transaction of its own that the release
 * rolls back. Statements are sent one after another, as pg would.
 */
export function contextQuery(target: ContextTarget, ctx: CompiledSessionContext, begin: string, plain: Query): Query {
  let tail: Promise<unknown> = Promise.resolve();
  const open = () => target.send(begin, undefined).then(() => target.send(ctx.sql, ctx.values));

  const run = async (args: unknown[]): Promise<unknown> => {
    const first = args[0];
    const status = target.transactionStatus();
    if (!target.live() || (status !== 'I' && status !== null)) return plain(...args);
    const text = typeof first === 'string' ? first : (first as { text?: unknown } | null)?.text;
    if (typeof text === 'string' && statementKind(text) === 'begin') {
      const res = await plain(...args);
      await target.send(ctx.sql, ctx.values);
      return res;
    }
    await open();
    let res: unknown;
    try {
      res = await plain(...args);
    } catch (err) {
      await target.send('ROLLBACK', undefined).catch(() => undefined);
      throw err;
    }
    await target.send('COMMIT', undefined);
    return res;
  };

  return (...args: unknown[]) => {
    const first = args[0];
    if (isSubmittable(first)) {
      const status = target.transactionStatus();
      if (!target.live() || (status !== 'I' && status !== null)) return plain(first);
      tail = tail.then(open).then(
        () => plain(first),
        (err: Error) => first.handleError?.(err),
      );
      return first;
    }
    const last = args[args.length - 1];
    const cb = typeof last === 'function' ? (last as AnyFn) : undefined;
    const callArgs = cb === undefined ? args : args.slice(0, -1);
    const result = tail.then(() => run(callArgs));
    tail = result.catch(() => undefined);
    if (cb === undefined) return result;
    result.then(
      (res) => cb(undefined, res),
      (err: unknown) => cb(err),
    );
    return undefined;
  };
}
