import type { Option, PresetDefault } from './option.js';
import { schemaRows, type SchemaGroup } from './schema.js';

/** An option's default as the docs state it: `` `30000` ``, `preset: 5 / 10 / 2`, `none`. */
export function documentedDefault(option: Option): string {
  if (option.defaultDoc !== undefined) return option.defaultDoc;
  const value = option.default;
  if (option.perPreset) {
    const p = value as PresetDefault;
    return `preset: ${p.development} / ${p.production} / ${p.test}`;
  }
  if (value === undefined) return 'none';
  if (Array.isArray(value)) return value.length === 0 ? '`[]`' : `\`${JSON.stringify(value)}\``;
  return typeof value === 'string' ? `\`'${value}'\`` : `\`${String(value)}\``;
}

/** The environment variable of an option, as the docs name it (`DB_POOL_MAX_SIZE`, `APP_INSTANCES`). */
export function documentedEnv(option: Option): string {
  if (option.env === undefined) return '';
  return option.envGlobal ? `\`${option.env}\`` : `\`DB_${option.env}\``;
}

const cell = (text: string) => text.replace(/\|/g, '\\|');

/**
 * The options table (Markdown): key, type, default, environment variable and one line of
 * documentation per option, a table per group. Generated from the schema by `npm run docs:options`.
 */
export function renderOptionsTable(groups: readonly SchemaGroup[]): string {
  const out: string[] = [];
  for (const group of groups) {
    out.push(`### ${group.title}`, '', '| Option | Type | Default | Environment | Meaning |', '|---|---|---|---|---|');
    for (const { label, option } of schemaRows([group])) {
      out.push(`| ${label} | ${cell(option.type)} | ${cell(documentedDefault(option))} | ${documentedEnv(option)} | ${cell(option.doc)} |`);
    }
    out.push('');
  }
  return out.join('\n');
}
