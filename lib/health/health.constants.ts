import { PING_CHECK_OPTIONS } from '../config/schema.health.js';
import type { NodeRole } from '../pool.interfaces.js';

export const DEFAULT_HEALTH_KEY = 'database';
export const DEFAULT_PING_TIMEOUT_MS = PING_CHECK_OPTIONS.timeoutMs.default;

export const TERMINUS_MISSING = (reason: string): string =>
  `Cannot use PoolHealthIndicator because @nestjs/terminus could not be loaded (${reason}). ` +
  'Please make sure that @nestjs/terminus ^11 or ^12 is installed (npm install @nestjs/terminus) and TerminusModule is imported.';

export const UNKNOWN_DATABASE = (database: string): string =>
  `Cannot check database "${database}" because no PoolModule registers it. ` +
  `Please make sure that PoolModule.forRoot${database === 'default' ? '()' : `({ name: '${database}', … })`} is imported in this application.`;

export const UNKNOWN_NODE = (database: string, node: string, known: readonly string[]): string =>
  `Cannot ping node "${node}" of database "${database}" because it has no such node (nodes: ${known.join(', ')}). ` +
  'Please make sure that the `node` option is "primary" or one of those names.';

export const POOLS_CLOSED = (database: string): string =>
  `Cannot check database "${database}" because its pools are closed (the application is shutting down).`;

export const PING_TIMEOUT = (ms: number): string => `timeout of ${ms}ms exceeded`;

export const PRIMARY_IN_RECOVERY = 'the server is a standby in recovery (read-only), not a primary';

export const NODE_DOWN = (role: NodeRole, name: string, address: string, reason: string): string =>
  `${role === 'primary' ? 'Primary' : 'Replica'} "${name}" (${address}) is down: ${reason}`;

export const REPLICAS_SHORT = (healthy: number, total: number, required: number): string =>
  `${healthy} of ${total} replica(s) healthy, ${required} required (requireReplicas).`;

export const REPLICAS_DEGRADED = (unhealthy: readonly string[]): string =>
  `Degraded: replica(s) ${unhealthy.map((n) => `"${n}"`).join(', ')} out of rotation; reads go to the other replicas or the primary.`;
