import { DEFAULT_CONSISTENCY_HEADER } from '../pool.constants.js';
import type { ReadConsistency, ReadOnlyInTransaction, ReplicaSelector, RoutingStrategy } from '../pool.interfaces.js';
import type { SessionOptions } from '../session/session-context.js';
import { bool, fn, intOption, msOption, nonEmptyString, oneOf, option, type Field } from './option.js';

/**
 * A planned Patroni switchover leaves no primary for ~1.1 s (the old one shuts down before the
 * candidate is promoted); writes waited 1.4–2.5 s in `npm run chaos:patroni` on a loaded 2-CPU
 * host. 5 s is at least twice that and stays well below common HTTP client timeouts.
 */
export const DEFAULT_HOLD_WRITES_MS = 5000;

const STRATEGIES: readonly RoutingStrategy[] = ['round-robin', 'random', 'weighted', 'least-busy'];

/** An HTTP header name: an RFC 7230 token (letters, digits and !#$%&'*+-.^_`|~). */
const HEADER_TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

export const ROUTING_OPTIONS = {
  strategy: option({
    type: '"round-robin" | "random" | "weighted" | "least-busy" | function',
    default: 'round-robin',
    doc: 'How a read picks a replica, or your own selector function.',
    check: (value: unknown, at: Field): RoutingStrategy | ReplicaSelector => (typeof value === 'function' ? (value as ReplicaSelector) : oneOf(STRATEGIES)(value, at)),
  }),
  fallbackToPrimary: option({ type: 'boolean', default: true, doc: 'When no replica can serve a read it goes to the primary; `false` throws `NoReplicaAvailableError`.', check: bool }),
  replicaBanMs: option({ ...msOption(0), default: 30_000, doc: 'A replica that failed with a connection-class error is skipped this long, then probed until it answers.' }),
  maxReplicationLagMs: option({ ...msOption(0), default: 10_000, doc: 'A replica measured further behind than this is skipped; `0` disables the check.' }),
  maxReplicationLagBytes: option({ ...intOption(0), default: 0, doc: 'The same in WAL bytes; `0` is off.' }),
  lagCheckIntervalMs: option({ ...msOption(50), default: 1000, doc: 'How often the lag monitor polls the primary and every replica.' }),
  consistency: option({
    type: '"read-your-writes" | "eventual"',
    default: 'read-your-writes',
    doc: "After a write, the same request / scope reads only from replicas that replayed it (`eventual`: ignore the scope's writes).",
    check: oneOf<ReadConsistency>(['read-your-writes', 'eventual']),
  }),
  consistencyHeader: option({
    type: 'HTTP header name',
    default: DEFAULT_CONSISTENCY_HEADER,
    doc: 'Request header that carries a consistency token from one request to the next (read lower-cased).',
    check: (value: unknown, at: Field) => {
      const name = nonEmptyString(value, at);
      if (!HEADER_TOKEN.test(name)) at.fail("an HTTP header name (letters, digits and !#$%&'*+-.^_`|~, no spaces or colons)", value);
      return name.toLowerCase();
    },
  }),
  readOnlyInTransaction: option({
    type: '"join" | "warn" | "throw"',
    default: 'join',
    doc: 'What `@ReadOnly()` does inside a read-write transaction.',
    check: oneOf<ReadOnlyInTransaction>(['join', 'warn', 'throw']),
  }),
} as const;

export const BREAKER_OPTIONS = {
  failureThreshold: option({ ...intOption(1), default: 5, doc: "Consecutive connection failures that open a node's breaker." }),
  resetTimeoutMs: option({ ...msOption(1), default: 10_000, doc: 'How long an open breaker fails fast before one trial connect.' }),
} as const;

export const FAILOVER_OPTIONS = {
  discoverRoles: option({ type: 'boolean', default: true, doc: 'Ask every node `pg_is_in_recovery()` and send the writes to the one answering as the primary; `false` pins the configured roles.', check: bool }),
  checkIntervalMs: option({ ...msOption(50), default: 1000, doc: "How often every node's role is checked." }),
  checkTimeoutMs: option({ ...msOption(50), default: 1000, doc: 'Deadline of one role check on one node; a node that does not answer counts as down.' }),
  failoverTimeoutMs: option({ ...msOption(0), default: 30_000, doc: 'After the primary is lost, the nodes are checked every 250 ms for this long, then every `checkIntervalMs`.' }),
  holdWritesMs: option({ ...msOption(0), default: DEFAULT_HOLD_WRITES_MS, doc: 'A write not yet sent waits this long for a new primary through a role change; `0` is off.' }),
} as const;

export const MONITOR_OPTIONS = {
  enabled: option({ type: 'boolean', default: true, doc: 'Watch every node for hangs with one extra connection per node.', check: bool }),
  intervalMs: option({ ...msOption(10), default: 250, doc: 'Time between two probes of one node.' }),
  timeoutMs: option({ ...msOption(10), default: 500, doc: 'A probe unanswered this long, while no other statement of that node answered either, marks the node hung.' }),
} as const;

export const SESSION_OPTIONS = {
  fromRequest: option({
    type: 'function',
    defaultDoc: 'none',
    doc: '`(request) => ({ role?, settings? }) | undefined`: the session context of each request, applied transaction-locally.',
    check: fn<SessionOptions['fromRequest']>('a function (request) => ({ role?, settings? }) | undefined'),
  }),
  secret: option({
    type: 'string[]',
    default: [] as readonly string[],
    doc: 'Settings whose values are never logged.',
    check: (value: unknown, at: Field): readonly string[] => {
      if (!Array.isArray(value) || value.some((name) => typeof name !== 'string')) at.fail('an array of setting names', value);
      return [...(value as string[])];
    },
  }),
} as const;

export const PREPARED_STATEMENT_OPTIONS = {
  enabled: option({ type: 'boolean', default: true, doc: 'Prepare repeated parameterized statements (off with `pgbouncer: true` unless `pgbouncerProtocol`).', check: bool }),
  threshold: option({ ...intOption(1), default: 3, doc: 'Sends of the same text on one connection before it is prepared there (1 = at once).' }),
  cacheSize: option({ ...intOption(1), default: 100, doc: 'Prepared statements kept per connection; the least recently used one is deallocated beyond it.' }),
  pgbouncerProtocol: option({ type: 'boolean', default: false, doc: 'With `pgbouncer: true`: PgBouncer ≥ 1.21 tracks protocol-level prepared statements, so preparation stays on.', check: bool }),
} as const;
