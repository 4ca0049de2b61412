import type { NodeOptions } from 'nestjs-pg-pools';
import { clusterConfig, pgNodeAt } from './cluster.js';
import { sessionCount as sessionCountOn } from './sessions.js';

// Helpers of the observability e2e tests (metrics, events, dashboard): cluster settings (from
// test/support/cluster.ts, so PGPOOLS_CLUSTER_OFFSET applies), a Prometheus text-format parser,
// and pg_stat_activity counts by port.

export const cluster = {
  host: clusterConfig.host,
  user: clusterConfig.user,
  password: clusterConfig.password,
  database: clusterConfig.database,
  ports: { primary: clusterConfig.ports.primary, replica1: clusterConfig.ports.replica1, replica2: clusterConfig.ports.replica2 },
};

export function node(port: number, extra: Partial<NodeOptions> = {}): NodeOptions {
  return { host: cluster.host, port, user: cluster.user, password: cluster.password, database: cluster.database, ...extra };
}

/** The pools' sessions (this application_name exactly) on the server at `port`. */
export function sessionCount(port: number, applicationName: string): Promise<number> {
  return sessionCountOn(pgNodeAt(port), applicationName, { poolOnly: true });
}

export interface PromSample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

export interface PromFamily {
  name: string;
  type: string;
  help: string;
  samples: PromSample[];
}

function unescapeLabel(value: string): string {
  return value.replace(/\\(["\\n])/g, (_, c: string) => (c === 'n' ? '\n' : c));
}

/**
 * Parses the Prometheus text exposition format (0.0.4) strictly: every sample line must match
 * `name{label="value",...} number`, belong to a family announced by `# TYPE`, and histogram
 * buckets must be cumulative with a `+Inf` bucket equal to `_count`.
 */
export function parsePrometheusText(text: string): Map<string, PromFamily> {
  const families = new Map<string, PromFamily>();
  const familyOf = (sample: string): PromFamily | undefined => {
    if (families.has(sample)) return families.get(sample);
    for (const suffix of ['_bucket', '_sum', '_count']) {
      if (sample.endsWith(suffix)) {
        const f = families.get(sample.slice(0, -suffix.length));
        if (f && (f.type === 'histogram' || f.type === 'summary')) return f;
      }
    }
    return undefined;
  };
  const lines = text.split('\n');
  lines.forEach((line, i) => {
    if (line.trim() === '') return;
    let m = /^# (HELP|TYPE) ([a-zA-Z_:][a-zA-Z0-9_:]*) (.*)$/.exec(line);
    if (m) {
      const f = families.get(m[2]!) ?? { name: m[2]!, type: 'untyped', help: '', samples: [] };
      if (m[1] === 'TYPE') {
        if (!['counter', 'gauge', 'histogram', 'summary', 'untyped'].includes(m[3]!)) throw new Error(`line ${i + 1}: bad type ${m[3]}`);
        f.type = m[3]!;
      } else f.help = m[3]!;
      families.set(m[2]!, f);
      return;
    }
    if (line.startsWith('#')) return;
    m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (-?[0-9.eE+-]+|NaN|\+Inf|-Inf)$/.exec(line);
    if (!m) throw new Error(`line ${i + 1} is not a Prometheus sample: ${line}`);
    const labels: Record<string, string> = {};
    if (m[3]) {
      const re = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(,|$)/gy;
      let rest = 0;
      let lm: RegExpExecArray | null;
      while ((lm = re.exec(m[3])) !== null) {
        labels[lm[1]!] = unescapeLabel(lm[2]!);
        rest = re.lastIndex;
      }
      if (rest !== m[3].length) throw new Error(`line ${i + 1}: bad labels ${m[3]}`);
    }
    const family = familyOf(m[1]!);
    if (!family) throw new Error(`line ${i + 1}: sample ${m[1]} has no # TYPE`);
    const raw = m[4]!;
    const value = raw === '+Inf' ? Infinity : raw === '-Inf' ? -Infinity : Number(raw);
    family.samples.push({ name: m[1]!, labels, value });
  });
  for (const f of families.values()) {
    if (f.type !== 'histogram') continue;
    const series = new Map<string, PromSample[]>();
    for (const s of f.samples.filter((x) => x.name.endsWith('_bucket'))) {
      const { le: _le, ...rest } = s.labels;
      const key = JSON.stringify(rest);
      series.set(key, [...(series.get(key) ?? []), s]);
    }
    for (const [key, buckets] of series) {
      for (let i = 1; i < buckets.length; i++) {
        if (buckets[i]!.value < buckets[i - 1]!.value) throw new Error(`${f.name}${key}: buckets are not cumulative`);
      }
      const inf = buckets.find((b) => b.labels.le === '+Inf');
      const count = f.samples.find((x) => x.name === `${f.name}_count` && JSON.stringify(x.labels) === key);
      if (!inf || !count || inf.value !== count.value) throw new Error(`${f.name}${key}: +Inf bucket does not equal _count`);
    }
  }
  return families;
}

/** The value of the one sample of `name` whose labels include `labels`; throws if none or several match. */
export function sampleValue(families: Map<string, PromFamily>, name: string, labels: Record<string, string>): number {
  const family = families.get(name.replace(/_(bucket|sum|count)$/, '')) ?? families.get(name);
  const matches = (family?.samples ?? []).filter(
    (s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v),
  );
  if (matches.length !== 1) throw new Error(`Expected one ${name}${JSON.stringify(labels)} sample, found ${matches.length}`);
  return matches[0]!.value;
}
