// The dashboard page's script, run by the browser: it polls the JSON endpoint every second and
// draws, per node, the connections (in use / idle / waiting against max), the acquire p95 of the
// last seconds, the replica lag, the load sizing advice and the routing split of reads. Every
// card and chart carries data-* attributes with the numbers it shows.
//
// Type-checked against the DOM (lib/metrics/dashboard/tsconfig.json, `npm run typecheck`) and
// linted as browser code; it is not part of the server build. scripts/build-dashboard.mjs
// compiles it into browser.compiled.ts (`npm run build:dashboard`), the string dashboard.page.ts
// serves; a unit spec fails while that string is not this file's compiled form.

import type { CountersView, DashboardConfig, DatabaseView, NodeView, SizingView, SnapshotView } from './snapshot-view.js';

/** One second of one node, kept for the charts. */
interface Sample {
  at: number;
  inUse: number;
  idle: number;
  waiting: number;
  size: number;
  max: number;
  p95: number | null;
  lag: number | null;
  reads: number;
  buckets: readonly number[];
}

type SeriesKey = 'inUse' | 'idle' | 'waiting' | 'p95' | 'lag';

interface Series {
  key: SeriesKey;
  color: string;
  fill?: boolean;
}

/** A chart's scale: the dashed ceiling series, if any, and the least top value. */
interface ChartScale {
  ceilingKey?: 'max';
  min?: number;
}

interface Chart {
  box: HTMLDivElement;
  canvas: HTMLCanvasElement;
  value: HTMLElement;
  windowLabel: HTMLSpanElement;
}

interface Section {
  section: HTMLElement;
  meta: HTMLDivElement;
  split: HTMLDivElement;
  bar: HTMLDivElement;
  legend: HTMLDivElement;
  grid: HTMLDivElement;
  segments: Record<string, HTMLSpanElement>;
}

type ValueField = 'inuse' | 'idle' | 'waiting' | 'size';

interface Card {
  card: HTMLElement;
  badges: HTMLSpanElement;
  values: Record<ValueField, HTMLDivElement>;
  usageBar: HTMLSpanElement;
  connections: Chart;
  acquire: Chart;
  lag: Chart | null;
  sizing: HTMLDivElement;
  counters: HTMLDivElement;
}

/** A chart title: plain text, or parts each drawn in its series' colour. */
type Title = string | ReadonlyArray<readonly [string, string?]>;

type DataAttributes = Record<string, string | number | boolean | null | undefined>;

function byId(id: string): HTMLElement {
  const found = document.getElementById(id);
  if (found === null) throw new Error(`Cannot start the dashboard because the page has no #${id} element.`);
  return found;
}

const config = JSON.parse(byId('pool-dashboard-config').textContent ?? '') as DashboardConfig;
const url = config.jsonUrl + window.location.search;
const HISTORY = config.historySamples;
const P95_WINDOW = 10;
const PALETTE = ['#2563eb', '#0891b2', '#7c3aed', '#db2777', '#ca8a04', '#059669', '#ea580c'];
const history: Record<string, Sample[]> = {};
const cards: Record<string, Card> = {};
const sections: Record<string, Section> = {};
const root = byId('databases');
const statusEl = byId('status');
let bounds: ReadonlyArray<number | null> = [];

function el<K extends keyof HTMLElementTagNameMap>(tag: K, cls?: string | null, text?: string): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

function fmtMs(v: number | null | undefined): string {
  if (v === null || v === undefined) return '–';
  if (v >= 1000) return (v / 1000).toFixed(v >= 10000 ? 0 : 1) + ' s';
  if (v >= 10) return Math.round(v) + ' ms';
  return Math.round(v * 100) / 100 + ' ms';
}

function css(name: string): string {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
}

function percentileFromBuckets(counts: readonly number[], p: number, maxMs: number): number | null {
  let total = 0;
  for (const count of counts) total += count;
  if (total === 0) return null;
  const rank = Math.ceil((p / 100) * total);
  let seen = 0;
  for (let i = 0; i < counts.length; i++) {
    seen += counts[i];
    if (seen >= rank) {
      const bound = bounds[i];
      return bound === null || bound === undefined ? maxMs : Math.min(bound, maxMs);
    }
  }
  return maxMs;
}

function sizeCanvas(canvas: HTMLCanvasElement): number {
  const ratio = window.devicePixelRatio || 1;
  const w = Math.max(1, Math.round(canvas.clientWidth * ratio));
  const h = Math.max(1, Math.round(canvas.clientHeight * ratio));
  if (canvas.width !== w || canvas.height !== h) {
    canvas.width = w;
    canvas.height = h;
  }
  return ratio;
}

/** The value at the chart's top edge: the highest drawn (at least `min`), plus a tenth of headroom. */
function chartTop(samples: readonly Sample[], series: readonly Series[], opts: ChartScale): number {
  let top = opts.min || 1;
  for (const sample of samples) {
    for (const s of series) {
      const v = sample[s.key];
      if (v !== null && v !== undefined && v > top) top = v;
    }
    if (opts.ceilingKey && sample[opts.ceilingKey] > top) top = sample[opts.ceilingKey];
  }
  return top * 1.1;
}

/** Three horizontal guide lines at the quarters. */
function drawGrid(ctx: CanvasRenderingContext2D, w: number, h: number, ratio: number): void {
  ctx.strokeStyle = '#eceef1';
  ctx.lineWidth = ratio;
  for (let i = 1; i < 4; i++) {
    ctx.beginPath();
    ctx.moveTo(0, (h * i) / 4);
    ctx.lineTo(w, (h * i) / 4);
    ctx.stroke();
  }
}

function drawSeries(canvas: HTMLCanvasElement, samples: readonly Sample[], series: readonly Series[], opts: ChartScale): void {
  const ratio = sizeCanvas(canvas);
  const ctx = canvas.getContext('2d');
  if (ctx === null) throw new Error('Cannot draw a chart because the canvas has no 2d context.');
  const w = canvas.width;
  const h = canvas.height;
  const pad = 4 * ratio;
  ctx.clearRect(0, 0, w, h);
  ctx.fillStyle = '#fafbfc';
  ctx.fillRect(0, 0, w, h);
  const top = chartTop(samples, series, opts);
  const slots = Math.min(HISTORY, Math.max(60, samples.length));
  const step = (w - 2 * pad) / Math.max(1, slots - 1);
  const x0 = w - pad - (samples.length - 1) * step;
  const y = (v: number) => h - pad - (v / top) * (h - 2 * pad);
  drawGrid(ctx, w, h, ratio);
  if (opts.ceilingKey && samples.length) {
    const ceiling = opts.ceilingKey;
    ctx.strokeStyle = css('--max');
    ctx.setLineDash([4 * ratio, 4 * ratio]);
    ctx.beginPath();
    ctx.moveTo(x0, y(samples[0][ceiling]));
    for (let i = 1; i < samples.length; i++) ctx.lineTo(x0 + i * step, y(samples[i][ceiling]));
    ctx.stroke();
    ctx.setLineDash([]);
  }
  for (const s of series) {
    let started = false;
    ctx.strokeStyle = s.color;
    ctx.lineWidth = 2 * ratio;
    ctx.beginPath();
    for (let i = 0; i < samples.length; i++) {
      const val = samples[i][s.key];
      if (val === null || val === undefined) {
        started = false;
        continue;
      }
      if (!started) {
        ctx.moveTo(x0 + i * step, y(val));
        started = true;
      } else ctx.lineTo(x0 + i * step, y(val));
    }
    ctx.stroke();
    if (s.fill && samples.length) {
      ctx.globalAlpha = 0.12;
      ctx.fillStyle = s.color;
      ctx.lineTo(x0 + (samples.length - 1) * step, h - pad);
      ctx.lineTo(x0, h - pad);
      ctx.closePath();
      ctx.fill();
      ctx.globalAlpha = 1;
    }
  }
  canvas.setAttribute('data-points', String(samples.length));
  canvas.setAttribute('data-top', String(Math.round(top * 1000) / 1000));
}

function chart(parent: HTMLElement, name: string, title: Title, small?: boolean): Chart {
  const box = el('div', 'chart');
  const label = el('div', 'label');
  const t = el('span');
  const parts: ReadonlyArray<readonly [string, string?]> = Array.isArray(title) ? title : [[title as string]];
  parts.forEach((part, i) => {
    if (i > 0) t.appendChild(document.createTextNode(' · '));
    const s = el('span', null, part[0]);
    if (part[1]) s.style.color = part[1];
    t.appendChild(s);
  });
  const windowLabel = el('span', null, '');
  t.appendChild(windowLabel);
  const value = el('b', null, '–');
  label.appendChild(t);
  label.appendChild(value);
  const canvas = el('canvas', small ? 'small' : null);
  canvas.setAttribute('data-chart', name);
  canvas.setAttribute('data-points', '0');
  box.appendChild(label);
  box.appendChild(canvas);
  parent.appendChild(box);
  return { box, canvas, value, windowLabel };
}

function buildSection(db: string): Section {
  const section = el('section', 'database');
  section.setAttribute('data-database', db);
  const h = el('h2', null, 'Database ' + db);
  const meta = el('div', 'meta');
  const split = el('div', 'split');
  split.setAttribute('data-routing-split', db);
  const splitTitle = el('div', 'title', 'Routing split — reads per node, last 60 s');
  const bar = el('div', 'bar');
  const legend = el('div', 'legend');
  split.appendChild(splitTitle);
  split.appendChild(bar);
  split.appendChild(legend);
  const grid = el('div', 'nodes');
  section.appendChild(h);
  section.appendChild(meta);
  section.appendChild(split);
  section.appendChild(grid);
  root.appendChild(section);
  sections[db] = { section, meta, split, bar, legend, grid, segments: {} };
  return sections[db];
}

function buildCard(db: string, name: string, node: NodeView, grid: HTMLElement): Card {
  const card = el('article', 'node');
  card.setAttribute('data-database', db);
  card.setAttribute('data-node', name);
  card.setAttribute('data-role', node.role);
  const head = el('div', 'head');
  head.appendChild(el('b', null, name));
  head.appendChild(el('span', 'role', node.role + ' · ' + node.address));
  const badges = el('span', 'badges');
  head.appendChild(badges);
  card.appendChild(head);
  const numbers = el('div', 'numbers');
  const fields: ReadonlyArray<readonly [ValueField, string]> = [
    ['inuse', 'in use'],
    ['idle', 'idle'],
    ['waiting', 'waiting'],
    ['size', 'open / max'],
  ];
  const values = {} as Record<ValueField, HTMLDivElement>;
  fields.forEach((f) => {
    const d = el('div');
    const v = el('div', 'v ' + f[0], '–');
    v.setAttribute('data-value', f[0]);
    d.appendChild(v);
    d.appendChild(el('div', 'k', f[1]));
    numbers.appendChild(d);
    values[f[0]] = v;
  });
  card.appendChild(numbers);
  const usage = el('div', 'usage');
  const usageBar = el('span');
  usage.appendChild(usageBar);
  card.appendChild(usage);
  const connections = chart(card, 'connections', [
    ['in use', css('--inuse')],
    ['idle', css('--idle')],
    ['waiting', css('--waiting')],
    ['max (dashed)', css('--max')],
  ]);
  const acquire = chart(card, 'acquire-p95', 'acquire p95 of the last ' + P95_WINDOW + ' s', true);
  const lag = node.role === 'replica' ? chart(card, 'lag', 'replication lag', true) : null;
  const sizing = el('div', 'sizing');
  sizing.setAttribute('data-sizing', name);
  card.appendChild(sizing);
  const counters = el('div', 'counters');
  card.appendChild(counters);
  grid.appendChild(card);
  return { card, badges, values, usageBar, connections, acquire, lag, sizing, counters };
}

function badge(parent: HTMLElement, text: string, cls: string): void {
  parent.appendChild(el('span', 'badge ' + cls, text));
}

function setData(e: Element, data: DataAttributes): void {
  for (const k in data) e.setAttribute('data-' + k, data[k] === null || data[k] === undefined ? '' : String(data[k]));
}

/** Label and value pairs drawn as `label <b>value</b>`. */
function pairs(parent: HTMLElement, list: ReadonlyArray<readonly [string, string | number]>): void {
  list.forEach((pair) => {
    const s = el('span', null, pair[0] + ' ');
    s.appendChild(el('b', null, String(pair[1])));
    parent.appendChild(s);
  });
}

function sizingData(z: SizingView | null): DataAttributes {
  if (!z) return { advice: 'off' };
  return {
    'suggested-max': z.suggestedMax,
    load: z.busiest ? z.busiest.load : 0,
    'peak-in-use': z.peakInUse,
    'waiting-share': z.waitingShare,
    advice: z.advice,
    'budget-max': z.budgetMax,
  };
}

/** A node's samples, this snapshot's included, and its acquire p95 over the last P95_WINDOW seconds. */
interface NodeHistory {
  samples: readonly Sample[];
  p95Recent: number | null;
}

/** Reads a node served in the last 60 s, and the colour of its share. */
interface ReadShare {
  reads: number;
  color: string;
}

/** The line under a database's title: preset, strategy, lag limit and who is primary. */
function renderMeta(sec: Section, dbSnap: DatabaseView): void {
  const topo = dbSnap.topology;
  const topoText = !topo
    ? ''
    : ' · primary ' +
      topo.primary +
      (topo.writable ? ' since ' + new Date(topo.primarySince).toISOString().slice(11, 19) + ' UTC' : ' (not answering: writes fail)') +
      (topo.fenced.length ? ' · split brain: ' + topo.fenced.join(', ') + ' fenced' : '');
  sec.meta.textContent =
    'preset ' +
    dbSnap.preset +
    ' · strategy ' +
    dbSnap.strategy +
    ' · fallback to primary ' +
    (dbSnap.fallbackToPrimary ? 'on' : 'off') +
    ' · max lag ' +
    fmtMs(dbSnap.maxReplicationLagMs) +
    topoText;
}

/** Appends the node's sample of this snapshot (once per snapshot) and keeps the last HISTORY. */
function recordSample(key: string, n: NodeView, at: number): NodeHistory {
  const h = history[key] || (history[key] = []);
  const prev = h.length ? h[h.length - 1] : null;
  const back = h.length >= P95_WINDOW ? h[h.length - P95_WINDOW] : h.length ? h[0] : null;
  // Bucket counts only grow: less those of P95_WINDOW samples ago, they count the recent acquires.
  const delta = n.acquireMs.buckets.map((v, i) => (back ? v - back.buckets[i] : v));
  const p95Recent = percentileFromBuckets(delta, 95, n.acquireMs.max);
  const sample: Sample = {
    at,
    inUse: n.inUse,
    idle: n.idle,
    waiting: n.waiting,
    size: n.size,
    max: n.max,
    p95: p95Recent,
    lag: n.lagMs,
    reads: n.counters.routedReads,
    buckets: n.acquireMs.buckets,
  };
  if (!prev || prev.at !== at) h.push(sample);
  while (h.length > HISTORY) h.shift();
  return { samples: h, p95Recent };
}

/** The node's reads since the sample of a minute ago (or the oldest one kept). */
function readShare(h: readonly Sample[], n: NodeView, index: number): ReadShare {
  const minuteAgo = h.length > 60 ? h[h.length - 61] : h[0];
  return { reads: n.counters.routedReads - minuteAgo.reads, color: n.role === 'primary' ? '#64748b' : PALETTE[index % PALETTE.length] };
}

/** The card's numbers and its usage bar. */
function renderNumbers(c: Card, n: NodeView, usagePct: number): void {
  c.values.inuse.textContent = String(n.inUse);
  c.values.idle.textContent = String(n.idle);
  c.values.waiting.textContent = String(n.waiting);
  c.values.size.textContent = n.size + ' / ' + n.max;
  c.usageBar.style.width = Math.min(100, usagePct) + '%';
  c.usageBar.style.background = n.usage > 0.9 ? css('--bad') : n.usage > 0.8 ? css('--warn') : css('--ok');
}

/** The card's state: its bad / warn class and its badges. */
function renderStatus(c: Card, n: NodeView, usagePct: number, maxLagMs: number): void {
  const bad = n.topologyRole === 'fenced' || n.banned || n.breaker.state !== 'closed' || n.usage > 0.9 || (n.idle === 0 && n.waiting > 0);
  const warn = !bad && (n.usage > 0.8 || n.waiting > 0 || (n.lagMs !== null && maxLagMs > 0 && n.lagMs > maxLagMs / 2));
  c.card.className = 'node' + (bad ? ' bad' : warn ? ' warn' : '');
  c.badges.textContent = '';
  if (n.topologyRole) {
    badge(c.badges, n.topologyRole, n.topologyRole === 'fenced' || n.topologyRole === 'unknown' ? 'bad' : n.topologyRole === 'primary' ? 'ok' : '');
  }
  if (n.banned) badge(c.badges, 'banned', 'bad');
  if (n.breaker.state !== 'closed') badge(c.badges, 'breaker ' + n.breaker.state, 'bad');
  if (!n.banned && n.breaker.state === 'closed') badge(c.badges, 'up', 'ok');
  badge(c.badges, usagePct + '% used', n.usage > 0.9 ? 'bad' : n.usage > 0.8 ? 'warn' : '');
  const z = n.sizing;
  if (z && z.advice === 'saturated') badge(c.badges, 'saturated', 'warn');
  if (z && z.advice === 'over-provisioned') badge(c.badges, 'over-provisioned', 'warn');
}

/** The load sizing advice, or nothing while it is off. */
function renderSizing(sizing: HTMLDivElement, z: SizingView | null): void {
  sizing.textContent = '';
  if (z) {
    pairs(sizing, [
      ['suggested max', z.suggestedMax === null ? '–' : z.suggestedMax + (z.limitedByBudget ? ' (budget)' : '')],
      ['load', z.busiest ? String(z.busiest.load) : '0'],
      ['peak in use', String(z.peakInUse)],
      ['waiting', Math.round(z.waitingShare * 100) + '% of ' + Math.round(z.coveredMs / 1000) + ' s'],
      ['acquire p95', fmtMs(z.acquireMs.p95)],
      ['advice', z.advice],
    ]);
  }
  setData(sizing, sizingData(z));
}

/** The connections, acquire p95 and (replicas) lag charts with their current values. */
function renderCharts(c: Card, n: NodeView, { samples: h, p95Recent }: NodeHistory): void {
  drawSeries(
    c.connections.canvas,
    h,
    [
      { key: 'inUse', color: css('--inuse'), fill: true },
      { key: 'idle', color: css('--idle') },
      { key: 'waiting', color: css('--waiting') },
    ],
    { ceilingKey: 'max', min: 1 },
  );
  setData(c.connections.canvas, { 'last-in-use': n.inUse, 'last-idle': n.idle, 'last-waiting': n.waiting, 'last-max': n.max });
  c.connections.windowLabel.textContent = ', last ' + (h.length < 120 ? h.length + ' s' : Math.round(h.length / 60) + ' min');
  c.connections.value.textContent = n.inUse + ' · ' + n.idle + ' · ' + n.waiting;
  drawSeries(c.acquire.canvas, h, [{ key: 'p95', color: css('--p95'), fill: true }], { min: 1 });
  setData(c.acquire.canvas, { last: p95Recent });
  c.acquire.value.textContent = fmtMs(p95Recent) + ' (all time ' + fmtMs(n.acquireMs.p95) + ')';
  if (c.lag) {
    drawSeries(c.lag.canvas, h, [{ key: 'lag', color: css('--lag'), fill: true }], { min: 10 });
    setData(c.lag.canvas, { last: n.lagMs });
    const peak = h.reduce((m, x) => (x.lag !== null && x.lag > m ? x.lag : m), 0);
    c.lag.value.textContent = n.lagMs === null ? 'unknown' : fmtMs(n.lagMs) + (n.lagBytes ? ' · ' + n.lagBytes + ' B' : '') + ' (peak ' + fmtMs(peak) + ')';
    c.lag.canvas.setAttribute('data-peak', String(peak));
  }
}

function renderCounters(counters: HTMLDivElement, k: CountersView): void {
  counters.textContent = '';
  pairs(counters, [
    ['acquired', k.acquired],
    ['reads', k.routedReads],
    ['writes', k.routedWrites],
    ['fallbacks', k.fallbacks],
    ['timeouts', k.acquireTimeouts],
    ['errors', k.errors],
    ['leaks', k.leaks],
    ['slow', k.slowQueries],
    ['evictions', k.evictions],
    ['bans', k.bans],
    ['prepared hits', k.preparedHits],
    ['prepared misses', k.preparedMisses],
    ['prepared evicted', k.preparedEvictions],
    ['prepared invalidated', k.preparedInvalidations],
  ]);
}

/** The numbers a node card carries as data-* attributes. */
function cardData(n: NodeView, at: number, { samples, p95Recent }: NodeHistory): DataAttributes {
  const k = n.counters;
  const z = n.sizing;
  return {
    at,
    size: n.size,
    idle: n.idle,
    'in-use': n.inUse,
    waiting: n.waiting,
    min: n.min,
    max: n.max,
    usage: n.usage,
    'acquire-p50': n.acquireMs.p50,
    'acquire-p95': n.acquireMs.p95,
    'acquire-p99': n.acquireMs.p99,
    'acquire-p95-recent': p95Recent,
    'lag-ms': n.lagMs,
    'lag-bytes': n.lagBytes,
    banned: n.banned,
    breaker: n.breaker.state,
    available: n.available,
    acquired: k.acquired,
    'routed-reads': k.routedReads,
    'routed-writes': k.routedWrites,
    fallbacks: k.fallbacks,
    timeouts: k.acquireTimeouts,
    errors: k.errors,
    leaks: k.leaks,
    'slow-queries': k.slowQueries,
    'prepared-hits': k.preparedHits,
    'prepared-misses': k.preparedMisses,
    'prepared-evictions': k.preparedEvictions,
    'prepared-invalidations': k.preparedInvalidations,
    samples: samples.length,
    'suggested-max': z ? z.suggestedMax : null,
    'sizing-advice': z ? z.advice : 'off',
  };
}

/** A node card: numbers, state, sizing, charts, counters and data-* attributes. */
function renderCard(c: Card, n: NodeView, recent: NodeHistory, maxLagMs: number, at: number): void {
  const usagePct = Math.round(n.usage * 100);
  renderNumbers(c, n, usagePct);
  renderStatus(c, n, usagePct, maxLagMs);
  renderSizing(c.sizing, n.sizing);
  renderCharts(c, n, recent);
  renderCounters(c.counters, n.counters);
  setData(c.card, cardData(n, at, recent));
}

/** The routing split bar and its legend: each node's share of the reads of the last 60 s. */
function renderReadsSplit(sec: Section, nodeNames: readonly string[], readsByNode: Record<string, ReadShare>, readsTotal: number): void {
  sec.legend.textContent = '';
  nodeNames.forEach((name) => {
    const r = readsByNode[name];
    const share = readsTotal > 0 ? r.reads / readsTotal : 0;
    let seg = sec.segments[name];
    if (!seg) {
      seg = sec.segments[name] = el('span');
      sec.bar.appendChild(seg);
    }
    seg.style.width = (share * 100).toFixed(2) + '%';
    seg.style.background = r.color;
    setData(seg, { node: name, reads: r.reads, share: Math.round(share * 1000) / 1000 });
    const item = el('span');
    const sw = el('i');
    sw.style.background = r.color;
    item.appendChild(sw);
    item.appendChild(document.createTextNode(name + ' ' + Math.round(share * 100) + '% (' + r.reads + ')'));
    sec.legend.appendChild(item);
  });
  setData(sec.split, { 'reads-total': readsTotal });
}

/** One database's section: built on first sight, then its meta line, node cards and routing split. */
function renderDatabase(db: string, dbSnap: DatabaseView, at: number, seen: Record<string, boolean>): void {
  const sec = sections[db] || buildSection(db);
  renderMeta(sec, dbSnap);
  const nodeNames = Object.keys(dbSnap.nodes);
  const readsByNode: Record<string, ReadShare> = {};
  let readsTotal = 0;
  nodeNames.forEach((name, index) => {
    const n = dbSnap.nodes[name];
    const key = db + '/' + name;
    seen[key] = true;
    const c = cards[key] || (cards[key] = buildCard(db, name, n, sec.grid));
    const recent = recordSample(key, n, at);
    readsByNode[name] = readShare(recent.samples, n, index);
    readsTotal += readsByNode[name].reads;
    renderCard(c, n, recent, dbSnap.maxReplicationLagMs, at);
  });
  renderReadsSplit(sec, nodeNames, readsByNode, readsTotal);
}

/** Drops the cards and history of nodes the last snapshot no longer has. */
function removeGoneCards(seen: Record<string, boolean>): void {
  Object.keys(cards).forEach((key) => {
    if (!seen[key]) {
      cards[key].card.remove();
      delete cards[key];
      delete history[key];
    }
  });
}

function update(snapshot: SnapshotView): void {
  bounds = snapshot.latencyBucketsMs;
  const seen: Record<string, boolean> = {};
  const dbNames = Object.keys(snapshot.databases);
  if (dbNames.length === 0 && !root.querySelector('.empty')) root.appendChild(el('p', 'empty', 'No database is registered.'));
  dbNames.forEach((db) => renderDatabase(db, snapshot.databases[db], snapshot.at, seen));
  removeGoneCards(seen);
  document.body.setAttribute('data-updated-at', String(snapshot.at));
  document.body.setAttribute('data-polls', String(Number(document.body.getAttribute('data-polls') || '0') + 1));
}

function poll(): void {
  const started = Date.now();
  fetch(url, { cache: 'no-store', credentials: 'same-origin', headers: { accept: 'application/json' } })
    .then((res) => {
      if (!res.ok) throw new Error('HTTP ' + res.status);
      return res.json() as Promise<SnapshotView>;
    })
    .then((snapshot) => {
      update(snapshot);
      statusEl.className = 'status';
      statusEl.textContent = 'updated ' + new Date(snapshot.at).toLocaleTimeString() + ' · every 1 s';
      document.body.setAttribute('data-status', 'ok');
    })
    .catch((err: unknown) => {
      statusEl.className = 'status error';
      statusEl.textContent = 'Cannot load ' + config.jsonUrl + ': ' + (err as { message?: unknown } | null)?.message + ' — retrying';
      document.body.setAttribute('data-status', 'error');
    })
    .then(() => {
      setTimeout(poll, Math.max(0, 1000 - (Date.now() - started)));
    });
}

poll();
