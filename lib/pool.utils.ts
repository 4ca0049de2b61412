import { DEFAULT_DATABASE } from './pool.constants.js';
import { DatabaseService } from './database.service.js';

export type PoolRole = 'primary' | 'replicas';

function databaseName(name?: string): string {
  return name === undefined || name === DEFAULT_DATABASE ? DEFAULT_DATABASE : name;
}

/** Injection token of a database's `DatabaseService`: the class itself for the default database. */
export function getDatabaseToken(name?: string): string | typeof DatabaseService {
  const db = databaseName(name);
  return db === DEFAULT_DATABASE ? DatabaseService : `${db}DatabaseService`;
}

/** Injection token of a raw `pg.Pool` (`primary`) or the replicas' `pg.Pool[]` (`replicas`). */
export function getPoolToken(name?: string, role: PoolRole = 'primary'): string {
  return `nestjs-pg-pools:${databaseName(name)}:${role}`;
}

/** Injection token of a database's module options (as given, before defaults). */
export function getPoolOptionsToken(name?: string): string {
  return `nestjs-pg-pools:${databaseName(name)}:options`;
}

export function getClusterToken(name?: string): string {
  return `nestjs-pg-pools:${databaseName(name)}:cluster`;
}

/** `cores × 2 + spindles` (seed 004): a good starting `max` for a database server. */
export function recommendPoolSize({ cores, spindles = 1 }: { cores: number; spindles?: number }): number {
  if (!Number.isInteger(cores) || cores < 1) {
    throw new TypeError(`Expected \`cores\` to be an integer from 1 and up, got ${JSON.stringify(cores)} (${typeof cores}).`);
  }
  if (!Number.isInteger(spindles) || spindles < 0) {
    throw new TypeError(`Expected \`spindles\` to be an integer from 0 and up, got ${JSON.stringify(spindles)} (${typeof spindles}).`);
  }
  return cores * 2 + spindles;
}
