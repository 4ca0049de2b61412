// `npm run docs:options [-- --out FILE]`: the options table, generated from the option schema
// (lib/config/schema*.ts), on stdout or into FILE. test/options-docs.spec.ts checks that the docs
// list every option with the schema's default.
import { writeFileSync } from 'node:fs';
import { renderOptionsTable } from '../lib/config/options-table.js';
import { HEALTH_SCHEMA, MODULE_SCHEMA } from '../lib/config/schema.js';

const text = [
  '## Options of `PoolModule.forRoot()`',
  '',
  'Preset defaults are development / production / test. A `DB_` variable is `DB_<NAME>_` for a named database.',
  '',
  renderOptionsTable(MODULE_SCHEMA),
  '## Options of `PoolHealthIndicator`',
  '',
  renderOptionsTable(HEALTH_SCHEMA),
].join('\n');

const out = process.argv.indexOf('--out');
if (out !== -1 && process.argv[out + 1]) writeFileSync(process.argv[out + 1]!, text);
else process.stdout.write(text);
