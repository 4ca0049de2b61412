import type { NodeOptions } from '../pool.interfaces.js';
import type { Field } from './option.js';

export const URL_ENCODING_HINT = 'Special characters in the user name or password must be percent-encoded (@ as %40, # as %23, / as %2F, : as %3A, space as %20).';

const TARGET_SESSION_ATTRS = ['any', 'read-write', 'primary'];

export function checkUrl(at: Field, url: unknown): string {
  if (typeof url !== 'string' || url.trim() === '') {
    at.fail('a postgres:// or postgresql:// connection URL', url);
  }
  const hosts = splitMultiHostUrl(at, url);
  if (hosts !== undefined) {
    for (const one of hosts) checkUrl(at, one);
    return url;
  }
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return at.fail('a postgres://user:password@host:port/database connection URL', url, URL_ENCODING_HINT);
  }
  if (parsed.hash !== '' || parsed.pathname.includes('@')) {
    at.fail('a postgres://user:password@host:port/database connection URL with one @ before the host', url, URL_ENCODING_HINT);
  }
  if (parsed.protocol !== 'postgres:' && parsed.protocol !== 'postgresql:') {
    at.fail('a URL starting with postgres:// or postgresql://', url);
  }
  if (!parsed.hostname && !parsed.searchParams.get('host')) {
    at.fail('a connection URL with a host', url);
  }
  if (parsed.port && !/^\d+$/.test(parsed.port)) at.fail('a connection URL with a numeric port', url);
  return url;
}

/**
 * A libpq multi-host URL (`postgres://u@h1:5432,h2,h3:5433/db?target_session_attrs=read-write`)
 * as one URL per host; `undefined` for a URL with one host. `target_session_attrs` is checked and
 * dropped: the writes go to whichever host answers as the primary.
 */
export function splitMultiHostUrl(at: Field, url: string): string[] | undefined {
  const m = /^(postgres(?:ql)?:\/\/)([^@/?#]*@)?([^/?#]*)(.*)$/s.exec(url);
  if (m === null || !m[3]!.includes(',')) return undefined;
  const [, scheme, userinfo = '', hostList, rest] = m as unknown as [string, string, string | undefined, string, string];
  const q = rest.indexOf('?');
  const path = q === -1 ? rest : rest.slice(0, q);
  const params = new URLSearchParams(q === -1 ? '' : rest.slice(q + 1));
  const attrs = params.get('target_session_attrs');
  if (attrs !== null && !TARGET_SESSION_ATTRS.includes(attrs)) {
    at.fail(`target_session_attrs ${TARGET_SESSION_ATTRS.map((a) => `"${a}"`).join(', ')} (the primary takes the writes; replicas are listed in replicas)`, attrs);
  }
  params.delete('target_session_attrs');
  const query = params.toString();
  return hostList.split(',').map((host, i) => {
    if (!/^(\[[0-9a-fA-F:.]+\]|[^\s:[\]]+)(:\d{1,5})?$/.test(host)) {
      at.fail(`host ${i + 1} of the multi-host URL as host or host:port`, host === '' ? '(empty)' : host);
    }
    return `${scheme}${userinfo}${host}${path}${query ? `?${query}` : ''}`;
  });
}

/** `host:port` of a node, never with credentials. */
export function nodeAddress(node: NodeOptions, env: Record<string, string | undefined>): string {
  if (node.connectionString) {
    const u = new URL(node.connectionString);
    const host = u.hostname || u.searchParams.get('host') || 'localhost';
    return `${host}:${u.port || '5432'}`;
  }
  return `${node.host ?? env.PGHOST ?? 'localhost'}:${node.port ?? env.PGPORT ?? 5432}`;
}

export function passwordOf(node: NodeOptions): string | undefined {
  if (typeof node.password === 'string') return node.password;
  if (node.connectionString) {
    try {
      const p = new URL(node.connectionString).password;
      return p ? decodeURIComponent(p) : undefined;
    } catch {
      return undefined;
    }
  }
  return undefined;
}

/**
 * A node from `DB_PRIMARY_URL` or a `DB_REPLICA_URLS` entry: the URL replaces the connection
 * fields given in code (connectionString, host, port, user, password, database); every other
 * field of the node in code at the same position is kept (name, weight, pool settings, `ssl`,
 * `options`, ...). TLS parameters in the URL (sslmode, sslrootcert, sslcert, sslkey) then take
 * precedence over `ssl` from code, as pg applies them.
 */
export function withEnvUrl(given: unknown, url: string): NodeOptions {
  const node = given !== null && typeof given === 'object' && !Array.isArray(given) ? (given as NodeOptions) : {};
  const { connectionString: _c, host: _h, port: _p, user: _u, password: _pw, database: _d, ...rest } = node;
  return { ...rest, connectionString: url };
}
