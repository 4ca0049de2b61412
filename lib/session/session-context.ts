import { PoolConfigurationError } from '../pool.exceptions.js';

export type { SessionContext, SessionOptions, SessionSettingValue } from '../pool-sections.interfaces.js';
import type { SessionContext } from '../pool-sections.interfaces.js';

/** A context checked and turned into one statement: `SELECT set_config($1, $2, true), …`. */
export interface CompiledSessionContext {
  readonly sql: string;
  readonly values: readonly string[];
  /** What is applied, for debug logs: secret values shown as `[secret]`. */
  readonly description: string;
}

/** A role or setting name: identifier characters, a setting with at most one dot-separated prefix. */
const ROLE_NAME = /^[A-Za-z_][A-Za-z0-9_$-]{0,62}$/;
const SETTING_NAME = /^[A-Za-z_][A-Za-z0-9_$]*(?:\.[A-Za-z_][A-Za-z0-9_$]*)?$/;
/** Settings a context may not set: they would change who the session is or where it looks for code. */
const REFUSED_SETTINGS = new Set(['role', 'session_authorization']);

function invalid(field: string, expected: string, got: unknown): never {
  const shown = typeof got === 'string' ? JSON.stringify(got) : `${String(got)} (${got === null ? 'null' : typeof got})`;
  throw new PoolConfigurationError(field, expected, shown);
}

/** Checks a context and compiles it; throws `PoolConfigurationError` naming the bad field. */
export function compileSessionContext(context: SessionContext, secrets: readonly string[] = [], where = 'session context'): CompiledSessionContext {
  if (context === null || typeof context !== 'object' || Array.isArray(context)) invalid(where, 'an object { role?, settings?, secret? }', context);
  const names: string[] = [];
  const values: string[] = [];
  const shown: string[] = [];
  const hidden = new Set([...secrets, ...(context.secret ?? [])]);
  const settings = context.settings ?? {};
  if (settings === null || typeof settings !== 'object' || Array.isArray(settings)) invalid(`${where}.settings`, 'an object of setting name → value', settings);
  for (const [name, value] of Object.entries(settings)) {
    if (!SETTING_NAME.test(name) || REFUSED_SETTINGS.has(name.toLowerCase())) {
      invalid(`${where}.settings`, 'setting names such as "app.tenant_id" or "work_mem" (letters, digits, _ and $, one optional "prefix."; role goes in `role`)', name);
    }
    if (typeof value !== 'string' && typeof value !== 'number' && typeof value !== 'boolean') invalid(`${where}.settings["${name}"]`, 'a string, number or boolean', value);
    names.push(name);
    values.push(String(value));
    shown.push(`${name} = ${hidden.has(name) ? '[secret]' : JSON.stringify(String(value))}`);
  }
  if (context.role !== undefined) {
    if (typeof context.role !== 'string' || !ROLE_NAME.test(context.role)) invalid(`${where}.role`, 'a role name (letters, digits, _, $ and -, at most 63 characters)', context.role);
    names.push('role');
    values.push(context.role);
    shown.push(`role = ${JSON.stringify(context.role)}`);
  }
  const calls = names.map((_, i) => `set_config($${2 * i + 1}, $${2 * i + 2}, true)`);
  const params: string[] = [];
  names.forEach((name, i) => params.push(name, values[i]!));
  return { sql: names.length === 0 ? '' : `SELECT ${calls.join(', ')}`, values: params, description: shown.length === 0 ? '(nothing)' : shown.join(', ') };
}

/** What a scope applies, per database (explicit `withSession` contexts, else the request's, read lazily). */
export interface SessionContexts {
  get(database: string): CompiledSessionContext | undefined;
}

/** Contexts a `withSession()` call set for one database, over the contexts of its parent scope. */
export class ExplicitContexts implements SessionContexts {
  constructor(
    readonly parent: SessionContexts | undefined,
    readonly database: string,
    readonly context: CompiledSessionContext | undefined,
  ) {}

  get(database: string): CompiledSessionContext | undefined {
    return database === this.database ? this.context : this.parent?.get(database);
  }
}
