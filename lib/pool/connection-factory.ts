import pg from 'pg';
import type { PoolClient, PoolConfig } from 'pg';
import { classifyFailure, FailureClass } from '../errors/failure-class.js';
import { PoolAcquireTimeoutError, PoolEndedError, PoolServerFullError } from '../pool.exceptions.js';
import type { NodeRole } from '../pool.interfaces.js';
import { sharedHandle } from './shared-handle.js';
import { errorMessage, type Done, type PoolState, type FactoryPart } from './pool-state.js';
import { PooledConnection } from './pooled-connection.js';
import { StatementCache } from './statement-cache.js';

/** A full server (53300): opening waits this long, doubling up to the cap, while open connections keep serving. */
const FULL_FIRST_DELAY_MS = 50;
const FULL_MAX_DELAY_MS = 500;
/** Background refill: the first retry delay after a failed connect. */
export const REFILL_FIRST_DELAY_MS = 50;
const READ_ONLY_SETTING = '-c default_transaction_read_only=on';

/** `options` with the replica session setting added or taken out. */
function withReadOnly(options: string | undefined, readOnly: boolean): string | undefined {
  const rest = (options ?? '').split(READ_ONLY_SETTING).join('').replace(/\s+/g, ' ').trim();
  const next = readOnly ? `${rest} ${READ_ONLY_SETTING}`.trim() : rest;
  return next === '' ? undefined : next;
}

type NodePoolConfig = PoolConfig & {
  Client?: unknown;
  onConnect?: (client: PoolClient) => unknown;
  verify?: (client: PoolClient, cb: (err?: Error) => void) => void;
  log?: (message: string, ...rest: unknown[]) => void;
  allowExitOnIdle?: boolean;
};

/**
 * Opens the connections of one node (HikariCP's `PoolBase`): the `pg.Client` class (behind
 * PgBouncer, with the node's `TimeZone` in the startup packet), the session settings of its role,
 * the connect deadline, the hooks a new connection runs (the module's `onConnect`, then the node's
 * own `verify` and `onConnect`), its jittered lifetime, and the backoff after a full server.
 */
export class ConnectionFactory implements FactoryPart {
  readonly #s: PoolState;
  readonly #Client: typeof pg.Client;
  #clientConfig: PoolConfig;
  /** The node's own pg-pool hooks: `onConnect(client)` (after the module's `onConnect`), `verify(client, cb)` and `log(message)`. */
  readonly #onConnect: ((client: PoolClient) => unknown) | undefined;
  readonly #verify: ((client: PoolClient, cb: (err?: Error) => void) => void) | undefined;
  readonly log: ((message: string, ...rest: unknown[]) => void) | undefined;
  /** Connections keep automatic prepared statements (off with node-postgres' `pipeline` mode: statements overlap there). */
  readonly #prepares: boolean;
  /** pg-pool's `allowExitOnIdle`: idle connections do not keep the process alive. */
  readonly exitOnIdle: boolean;
  /** The server had no slot left: no connection opens before this `Date.now()`; callers use open ones. */
  fullUntil = 0;
  #fullDelay = FULL_FIRST_DELAY_MS;
  #lastFull: PoolServerFullError | undefined;
  #fullTimer: NodeJS.Timeout | undefined;

  constructor(s: PoolState) {
    this.#s = s;
    const config = s.config;
    const poolConfig = config.poolConfig as NodePoolConfig;
    const Base = (poolConfig.Client as typeof pg.Client | undefined) ?? pg.Client;
    const timezone = config.pgbouncer ? config.timezone : undefined;
    this.#Client =
      timezone === undefined
        ? Base
        : class extends Base {
            getStartupConf(): Record<string, string> {
              const conf = (Base.prototype as unknown as { getStartupConf(this: unknown): Record<string, string> }).getStartupConf.call(this);
              conf.TimeZone = timezone;
              return conf;
            }
          };
    const { Client: _client, min: _min, max: _max, idleTimeoutMillis: _idleMs, connectionTimeoutMillis: _ct, maxUses: _uses, onConnect, verify, log, ...clientConfig } = poolConfig;
    this.#onConnect = onConnect;
    this.#verify = verify;
    this.log = log;
    this.#clientConfig = clientConfig;
    this.#prepares = config.preparedStatements.enabled && (clientConfig as { pipeline?: boolean }).pipeline !== true;
    this.exitOnIdle = poolConfig.allowExitOnIdle === true;
  }

  /** New connections carry the session settings of `role`: replicas `default_transaction_read_only`, the primary not. */
  setRole(role: NodeRole): void {
    const byRole = this.#s.config.roleOptions;
    if (byRole !== undefined) this.#clientConfig = { ...this.#clientConfig, options: byRole[role] };
    else if (!this.#s.config.pgbouncer) this.#clientConfig = { ...this.#clientConfig, options: withReadOnly(this.#clientConfig.options, role === 'replica') };
  }

  /**
   * Opens a new connection for one caller, within `connectTimeoutMs` and the caller's deadline.
   * `background`: the refill's, not a caller's (its failures do not count for the breaker here).
   */
  open(t0: number, deadline: number, done: Done, background = false): void {
    const s = this.#s;
    this.log?.('connecting new client');
    const conn = new PooledConnection(this.#clientConfig, this.#Client, s.generation, (c, err) => s.releaser.onClientError(c, err));
    if (this.#prepares) conn.statements = new StatementCache(s.config.preparedStatements, s.counters, () => (conn.expiresAt = Date.now()));
    s.bag.add(conn);
    const started = performance.now();
    const budget = Math.max(1, Math.ceil(Math.min(s.config.connectTimeoutMs, deadline - started)));
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      conn.destroy(new Error(`connection timeout: no answer from the server within ${budget}ms`));
    }, budget);
    timer.unref();
    conn.client.connect((err?: Error) => {
      clearTimeout(timer);
      // After a user's end() the caller still gets its connection (pg-pool lets it finish); after the module's shutdown it fails.
      if (err || timedOut || conn.broken || (s.ended && (background || s.forcedEnd))) {
        s.bag.remove(conn);
        void conn.close(0);
        const failure = s.ended
          ? new PoolEndedError(s.database, s.name)
          : timedOut
            ? this.#connectTimeout(t0, conn.abortedBy, background)
            : this.#connectFailed(conn.abortedBy ?? err ?? conn.brokenBy, background);
        this.log?.('client failed to connect', failure);
        done(failure, undefined);
        s.acquirer.pulse();
        s.releaser.settleEnd();
        return;
      }
      conn.opened(Date.now(), s.config.maxLifetimeMs);
      this.#slotsAgain();
      s.hung = undefined;
      if (conn.expiresAt !== 0) this.#armLifetime(conn);
      s.counters.created++;
      s.lastAnswerAt = performance.now();
      const ms = s.lastAnswerAt - started;
      s.connectTime.record(ms);
      if (s.host.emitting) s.emit({ type: 'connect', durationMs: ms });
      if (s.facade.heard) s.facade.emit('connect', sharedHandle(conn));
      this.log?.('new client connected');
      s.host
        .initClient(conn.client as unknown as PoolClient, s.node)
        .then((hooked) => {
          conn.hooked = hooked === true;
          return this.#ownHooks(conn);
        })
        .then(
          () => done(undefined, conn),
          (initError: Error) => {
            void s.releaser.remove(conn, 'error');
            done(initError, undefined);
          },
        );
    });
  }

  /**
   * A connection of this node outside the pool (the monitors'): the pool's settings with
   * `application_name` suffixed, connected within `timeoutMs`, never keeping the process alive.
   * The caller closes it.
   */
  openDetached(suffix: string, timeoutMs: number): Promise<PooledConnection> {
    const appName = String(this.#clientConfig.application_name ?? 'nestjs-pg-pools');
    const conn = new PooledConnection({ ...this.#clientConfig, application_name: `${appName}${suffix}`.slice(0, 63) }, this.#Client, this.#s.generation, () => undefined);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => conn.destroy(new Error(`connect timed out after ${timeoutMs}ms`)), timeoutMs);
      timer.unref();
      conn.client.connect((err?: Error) => {
        clearTimeout(timer);
        if (err || conn.broken) {
          conn.destroy(err ?? new Error('connect failed'));
          reject(conn.abortedBy ?? err);
          return;
        }
        conn.opened(Date.now(), 0);
        // A background connection (the monitors') never keeps the process alive.
        (conn.client as unknown as { unref(): void }).unref();
        resolve(conn);
      });
    });
  }

  /** Opening backs off after a full server; the error to give a caller who has no open connection to wait for. */
  opening(): 'open' | 'wait' | PoolServerFullError {
    if (this.fullUntil === 0 || Date.now() >= this.fullUntil) return 'open';
    return this.#s.inUse > 0 ? 'wait' : this.#lastFull!;
  }

  stop(): void {
    clearTimeout(this.#fullTimer);
  }

  /** The node's own pg-pool hooks on a new connection: `verify(client, cb)`, then `onConnect(client)`. */
  #ownHooks(conn: PooledConnection): Promise<unknown> | undefined {
    const verify = this.#verify;
    const onConnect = this.#onConnect;
    if (verify === undefined && onConnect === undefined) return undefined;
    const client = sharedHandle(conn);
    const verified = verify === undefined ? Promise.resolve() : new Promise<void>((resolve, reject) => verify(client, (err) => (err ? reject(err) : resolve())));
    return onConnect === undefined ? verified : verified.then(() => onConnect(client));
  }

  /** Retires the connection at its (jittered) lifetime if it is idle then; a lent one retires when given back. */
  #armLifetime(conn: PooledConnection): void {
    const s = this.#s;
    const timer = setTimeout(() => {
      if (s.ended || !s.bag.takeIdle(conn)) return;
      s.counters.evictions++;
      void s.releaser.remove(conn, 'lifetime');
    }, conn.expiresAt - Date.now());
    timer.unref();
    conn.lifetimeTimer = timer;
  }

  #connectTimeout(t0: number, cause: unknown, background: boolean): PoolAcquireTimeoutError {
    const s = this.#s;
    const timeoutError = s.timeoutError(t0, cause);
    (timeoutError as { connectionError?: boolean }).connectionError = true;
    s.counters.connectionErrors++;
    if (!background) s.breaker.failure(s.host.scrub(errorMessage(cause)));
    s.refill.schedule(REFILL_FIRST_DELAY_MS);
    return timeoutError;
  }

  #connectFailed(err: unknown, background: boolean): Error {
    const s = this.#s;
    const failure = (err !== null && typeof err === 'object' ? err : new Error(String(err))) as Error;
    failure.message = s.host.scrub(failure.message);
    const cls = classifyFailure(failure);
    if (cls === FailureClass.ServerFull) return this.#serverFull(failure);
    if (cls === FailureClass.NodeGone || cls === FailureClass.RoleChange) {
      s.counters.connectionErrors++;
      if (!background && cls === FailureClass.NodeGone) s.breaker.failure(failure.message);
      if (s.host.emitting) s.emit({ type: 'error', kind: 'connection', message: failure.message });
      s.refill.schedule(REFILL_FIRST_DELAY_MS);
    }
    return failure;
  }

  /**
   * A connect met 53300 / 53400: not a dead node (no breaker, no ban). Opening backs off (50 ms
   * doubling to 500 ms) while callers are served from open connections; counted and reported.
   */
  #serverFull(cause: Error): PoolServerFullError {
    const s = this.#s;
    const now = Date.now();
    const first = this.fullUntil === 0;
    s.counters.serverFull++;
    this.fullUntil = now + this.#fullDelay * (0.5 + Math.random() * 0.5);
    this.#fullDelay = Math.min(this.#fullDelay * 2, FULL_MAX_DELAY_MS);
    const err = new PoolServerFullError(s.database, s.name, s.config.address, cause.message, cause);
    this.#lastFull = err;
    if (first) s.host.warn(err.message);
    if (s.host.emitting) s.emit({ type: 'error', kind: 'server-full', message: err.message });
    if (this.#fullTimer === undefined) {
      this.#fullTimer = setTimeout(() => {
        this.#fullTimer = undefined;
        s.acquirer.pulse();
      }, this.fullUntil - now);
      this.#fullTimer.unref();
    }
    return err;
  }

  /** A connection opened: a full server has slots again. */
  #slotsAgain(): void {
    if (this.fullUntil === 0) return;
    this.fullUntil = 0;
    this.#fullDelay = FULL_FIRST_DELAY_MS;
    this.#lastFull = undefined;
  }
}
