import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { documentedDefault, documentedEnv } from '../lib/config/options-table.js';
import type { Section } from '../lib/config/option.js';
import { MODULE_SCHEMA, schemaRows, SECTIONS } from '../lib/config/schema.js';
import { DATABASE_OPTIONS } from '../lib/config/schema.database.js';
import { HEALTH_CHECK_OPTIONS, PING_CHECK_OPTIONS } from '../lib/config/schema.health.js';
import { OPEN_TELEMETRY_OPTIONS } from '../lib/config/schema.metrics.js';
import { NODE_OPTIONS, POOL_SETTINGS } from '../lib/config/schema.pool.js';

// Every option of the schema (lib/config/schema*.ts) is in an options table of the docs
// (README.md or any docs/**/*.md page, wherever the table lives), with the schema's default.
// `npm run docs:options` prints the table the schema gives.

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

function markdownFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) return markdownFiles(full);
    return entry.name.endsWith('.md') ? [full] : [];
  });
}

const cells = (line: string) =>
  line
    .trim()
    .replace(/^\||\|$/g, '')
    .split(/(?<!\\)\|/)
    .map((c) => c.trim());

/** Default cells of every options-table row, by the option the row names (`routing.strategy`, `node weight`). */
export function documentedDefaults(markdown: string, file: string): Map<string, Array<{ cell: string; where: string }>> {
  const found = new Map<string, Array<{ cell: string; where: string }>>();
  const lines = markdown.replace(/```[\s\S]*?```/g, '').split('\n');
  let column = -1;
  lines.forEach((line, i) => {
    if (!line.trim().startsWith('|')) {
      column = -1;
      return;
    }
    const row = cells(line);
    if (column === -1) {
      // A table's header: the column that holds the default, if any.
      column = row.findIndex((c) => /^default$/i.test(c));
      if (column === -1) column = -2;
      return;
    }
    if (column < 0 || /^:?-+:?$/.test(row[0] ?? '')) return;
    const label = /^(node )?`([A-Za-z0-9_.]+)/.exec(row[0] ?? '');
    if (label === null || row[column] === undefined) return;
    const key = `${label[1] ?? ''}${label[2]}`;
    found.set(key, [...(found.get(key) ?? []), { cell: row[column]!, where: `${file}:${i + 1}` }]);
  });
  return found;
}

const normalize = (text: string) => text.replace(/[`'"]/g, '').replace(/\s+/g, ' ').trim();

/** A documented default agrees when it states the schema's default, possibly followed by a remark (`1000 (min 50)`). */
export function agrees(cell: string, expected: string): boolean {
  const given = normalize(cell);
  const want = normalize(expected);
  // What follows the default must not continue it: `0.25` does not state `0`, nor `3000` `300`.
  return given === want || (given.startsWith(want) && !/^(\w|\.\w)/.test(given.slice(want.length)));
}

describe('options docs', () => {
  const files = [path.join(root, 'README.md'), ...markdownFiles(path.join(root, 'docs'))];
  const documented = new Map<string, Array<{ cell: string; where: string }>>();
  for (const file of files) {
    for (const [key, rows] of documentedDefaults(readFileSync(file, 'utf8'), path.relative(root, file))) {
      documented.set(key, [...(documented.get(key) ?? []), ...rows]);
    }
  }
  const rows = schemaRows(MODULE_SCHEMA).map(({ label, option }) => ({ key: label.replace(/`/g, ''), expected: documentedDefault(option) }));

  it('lists every option of the schema in an options table', () => {
    const missing = rows.filter((r) => !documented.has(r.key)).map((r) => r.key);
    expect(missing).toEqual([]);
  });

  it('states the default the schema declares', () => {
    const wrong = rows.flatMap((r) =>
      (documented.get(r.key) ?? []).filter((d) => !agrees(d.cell, r.expected)).map((d) => `${r.key} at ${d.where}: documented "${d.cell}", schema "${r.expected}"`),
    );
    expect(wrong).toEqual([]);
  });

  it('names every environment variable of the schema', () => {
    const text = files.map((file) => readFileSync(file, 'utf8')).join('\n');
    const missing = schemaRows(MODULE_SCHEMA)
      .map(({ option }) => documentedEnv(option))
      .filter((name) => name !== '' && !text.includes(name));
    expect(missing).toEqual([]);
  });

  it('reads a table wherever it is and catches a wrong default', () => {
    const page = ['| Option | Type | Default | Meaning |', '|---|---|---|---|', '| `routing.replicaBanMs` | ms | `3000` | … |', '| node `weight` | number | `1` (a share) | … |'].join('\n');
    const found = documentedDefaults(page, 'page.md');
    expect(found.get('routing.replicaBanMs')).toEqual([{ cell: '`3000`', where: 'page.md:3' }]);
    expect(agrees('`3000`', '`30000`')).toBe(false);
    expect(agrees('`30000` (min 50)', '`30000`')).toBe(true);
    expect(agrees('`0.25`', '`0`')).toBe(false);
    expect(agrees('`0`.', '`0`')).toBe(true);
    expect(agrees(found.get('node weight')![0]!.cell, '`1`')).toBe(true);
  });
});

/** `Default: …` of every documented property, by interface: `{ RoutingOptions: { strategy: '`round-robin`.' } }`. */
export function interfaceDefaults(source: string): Map<string, Map<string, string>> {
  const out = new Map<string, Map<string, string>>();
  for (const block of source.split(/^export interface /m).slice(1)) {
    const name = /^\w+/.exec(block)![0];
    const props = new Map<string, string>();
    for (const m of block.matchAll(/\/\*\*([\s\S]*?)\*\/\s*(\w+)\??:/g)) {
      const text = m[1]!.replace(/^\s*\*\s?/gm, ' ').replace(/\s+/g, ' ');
      const stated = /Default: (.*)$/.exec(text);
      if (stated) props.set(m[2]!, stated[1]!.trim());
    }
    out.set(name, props);
  }
  return out;
}

describe('option doc comments', () => {
  const sections: Record<string, Section> = {
    PoolDefaults: POOL_SETTINGS,
    NodeOptions: NODE_OPTIONS,
    PoolModuleOptions: DATABASE_OPTIONS,
    PoolModuleRootOptions: DATABASE_OPTIONS,
    RoutingOptions: SECTIONS.routing,
    BreakerOptions: SECTIONS.breaker,
    FailoverOptions: SECTIONS.failover,
    MonitorOptions: SECTIONS.monitor,
    MetricsOptions: SECTIONS.metrics,
    OpenTelemetryMetricsOptions: OPEN_TELEMETRY_OPTIONS,
    AlertOptions: SECTIONS.alerts,
    LoadSizingOptions: SECTIONS.loadSizing,
    PreparedStatementOptions: SECTIONS.preparedStatements,
    PoolPingCheckOptions: PING_CHECK_OPTIONS,
    PoolHealthCheckOptions: HEALTH_CHECK_OPTIONS,
  };

  it('state the default the schema declares', () => {
    const stated = new Map([...interfaceDefaults(readFileSync(path.join(root, 'lib/pool.interfaces.ts'), 'utf8')), ...interfaceDefaults(readFileSync(path.join(root, 'lib/pool-sections.interfaces.ts'), 'utf8')), ...interfaceDefaults(readFileSync(path.join(root, 'lib/health/health.interfaces.ts'), 'utf8'))]);
    const wrong: string[] = [];
    let checked = 0;
    for (const [name, section] of Object.entries(sections)) {
      const props = stated.get(name);
      expect(props).toBeDefined();
      for (const [key, text] of props!) {
        const option = section[key];
        if (option === undefined) continue;
        checked++;
        if (!agrees(text, documentedDefault(option))) wrong.push(`${name}.${key}: "${text}", schema "${documentedDefault(option)}"`);
      }
    }
    expect(wrong).toEqual([]);
    expect(checked).toBeGreaterThan(80);
  });
});
