import { BadRequestException } from '@nestjs/common';
import type { ResolvedOptions } from '../config/resolve-options.js';
import { DEFAULT_DATABASE } from '../pool.constants.js';
import { compileSessionContext, type CompiledSessionContext, type SessionContexts } from '../session/session-context.js';
import { parseConsistencyToken, TOKEN_FORM, type RoutingScope, type RoutingSession } from './routing-context.js';

const MAX_TOKEN_LENGTH = 1024;

type Headers = Record<string, string | string[] | undefined>;

/** What a request scope needs of the application's databases (`ClusterRegistry` implements it). */
export interface ScopeRegistry {
  /** The consistency headers the databases read, each once. */
  consistencyHeaders(): readonly string[];
  /** True when a database derives a session context from each request. */
  sessionContexts(): boolean;
  get(database: string): { readonly options: Pick<ResolvedOptions, 'session'> } | undefined;
}

function headerOf(headers: Headers | undefined, name: string): string | undefined {
  const value = headers?.[name];
  return Array.isArray(value) ? value.join(',') : value;
}

/** The consistency tokens a request carries in `names`, per database; a 400 when one is malformed. */
export function carriedToken(request: unknown, names: readonly string[]): Map<string, bigint> | undefined {
  const headers = (request as { headers?: Headers } | undefined)?.headers;
  let carried: Map<string, bigint> | undefined;
  for (const name of names) {
    const token = headerOf(headers, name);
    if (token === undefined || token.trim() === '') continue;
    const parsed = token.length <= MAX_TOKEN_LENGTH ? parseConsistencyToken(token, DEFAULT_DATABASE) : undefined;
    if (parsed === undefined) {
      const shown = token.length > 64 ? `${token.slice(0, 64)}…` : token;
      throw new BadRequestException(
        `Cannot read the ${name} header because it is not a consistency token: expected ${TOKEN_FORM}, got ${JSON.stringify(shown)}. ` +
          'Please make sure that the client sends back the value db.consistencyToken() returned, unchanged.',
      );
    }
    carried ??= new Map();
    for (const [database, lsn] of parsed) {
      const current = carried.get(database);
      if (current === undefined || lsn > current) carried.set(database, lsn);
    }
  }
  return carried;
}

/**
 * The session of one request (or message): the consistency header is read the first time a
 * statement asks for the carried WAL position, so a request that never touches the database never
 * parses it. A malformed header fails that statement (and every later one) with a 400.
 */
export class RequestSession implements RoutingSession {
  writes: Map<string, number> | undefined = undefined;
  seen: Map<string, { version: number; lsn: bigint }> | undefined = undefined;
  #minLsn: Map<string, bigint> | undefined = undefined;
  #unread: boolean;
  #error: unknown = undefined;

  constructor(
    readonly owner: unknown,
    readonly registry: ScopeRegistry,
    options: { readsHeaders: boolean },
  ) {
    this.#unread = options.readsHeaders;
  }

  get minLsn(): Map<string, bigint> | undefined {
    if (this.#error !== undefined) throw this.#error;
    if (this.#unread) {
      try {
        this.#minLsn = carriedToken(this.owner, this.registry.consistencyHeaders());
      } catch (err) {
        this.#error = err;
        throw err;
      }
      this.#unread = false;
    }
    return this.#minLsn;
  }

  set minLsn(value: Map<string, bigint> | undefined) {
    this.#unread = false;
    this.#minLsn = value;
  }
}

/**
 * The session contexts of one request: each database's `session.fromRequest(request)`, called at
 * the first statement on that database (guards have run by then), checked once, kept for the request.
 */
export class RequestContexts implements SessionContexts {
  readonly #known = new Map<string, CompiledSessionContext | undefined>();
  readonly #failed = new Map<string, unknown>();

  constructor(
    readonly owner: unknown,
    readonly registry: ScopeRegistry,
  ) {}

  get(database: string): CompiledSessionContext | undefined {
    if (this.#known.has(database)) return this.#known.get(database);
    if (this.#failed.has(database)) throw this.#failed.get(database);
    const options = this.registry.get(database)?.options.session;
    try {
      const given = options?.fromRequest?.(this.owner);
      const ctx = given === undefined || given === null ? undefined : compileSessionContext(given, options!.secret, 'session.fromRequest(request)');
      this.#known.set(database, ctx);
      return ctx;
    } catch (err) {
      this.#failed.set(database, err);
      throw err;
    }
  }
}

/** A read-write scope with a fresh session for `owner` (an HTTP request, a message, a socket event). */
export function requestScope(owner: unknown, registry: ScopeRegistry, options: { readsHeaders: boolean }): RoutingScope {
  const contexts = registry.sessionContexts() ? new RequestContexts(owner, registry) : undefined;
  return { readOnly: false, session: new RequestSession(owner, registry, options), tx: undefined, contexts };
}
