/**
 * The live dashboard: one self-contained HTML page (inline CSS and JS, no external resources)
 * that polls the JSON endpoint every second and draws, per node, the connections (in use / idle /
 * waiting against max), the acquire p95 of the last seconds, the replica lag, the load sizing
 * advice (suggested max, load, peak) and the routing split of reads. Every card and chart carries data-* attributes with the numbers it shows.
 */

const STYLE = `
:root { --bg:#f5f6f8; --card:#fff; --ink:#1c2430; --muted:#66707d; --line:#e3e6ea;
  --inuse:#2563eb; --idle:#16a34a; --waiting:#dc2626; --max:#9aa3ad; --p95:#7c3aed; --lag:#d97706;
  --ok:#16a34a; --warn:#d97706; --bad:#dc2626; }
* { box-sizing: border-box; }
body { margin:0; font:14px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif; background:var(--bg); color:var(--ink); }
header { display:flex; align-items:baseline; gap:16px; padding:14px 20px; background:#1c2430; color:#fff; }
header h1 { margin:0; font-size:18px; font-weight:600; }
header .status { margin-left:auto; font-size:13px; color:#c9d1db; }
header .status.error { color:#ffb4b4; }
main { padding:16px 20px 32px; }
section.database { margin-bottom:28px; }
section.database > h2 { margin:0 0 4px; font-size:16px; }
.meta { color:var(--muted); font-size:12px; margin-bottom:10px; }
.split { background:var(--card); border:1px solid var(--line); border-radius:8px; padding:10px 12px; margin-bottom:12px; }
.split .title { font-size:12px; color:var(--muted); margin-bottom:6px; }
.split .bar { display:flex; height:22px; border-radius:4px; overflow:hidden; background:#eef0f3; }
.split .bar span { display:block; height:100%; min-width:0; transition:width .4s; }
.split .legend { display:flex; flex-wrap:wrap; gap:14px; margin-top:6px; font-size:12px; }
.split .legend i { display:inline-block; width:10px; height:10px; border-radius:2px; margin-right:5px; vertical-align:-1px; }
.nodes { display:grid; grid-template-columns:repeat(auto-fill,minmax(360px,1fr)); gap:12px; }
.node { background:var(--card); border:1px solid var(--line); border-top:4px solid var(--ok); border-radius:8px; padding:12px; }
.node.warn { border-top-color:var(--warn); }
.node.bad { border-top-color:var(--bad); }
.node .head { display:flex; align-items:baseline; gap:8px; }
.node .head b { font-size:15px; }
.node .head .role { font-size:11px; text-transform:uppercase; letter-spacing:.04em; color:var(--muted); }
.node .head .badges { margin-left:auto; display:flex; gap:4px; }
.badge { font-size:11px; padding:1px 6px; border-radius:10px; background:#eef0f3; color:var(--muted); }
.badge.bad { background:#fde2e2; color:var(--bad); }
.badge.warn { background:#fdf0dc; color:var(--warn); }
.badge.ok { background:#e1f5e7; color:var(--ok); }
.numbers { display:grid; grid-template-columns:repeat(4,1fr); gap:6px; margin:10px 0 6px; }
.numbers div { text-align:center; }
.numbers .v { font-size:22px; font-weight:600; font-variant-numeric:tabular-nums; }
.numbers .k { font-size:11px; color:var(--muted); }
.v.inuse { color:var(--inuse); } .v.idle { color:var(--idle); } .v.waiting { color:var(--waiting); }
.usage { height:6px; background:#eef0f3; border-radius:3px; overflow:hidden; margin-bottom:8px; }
.usage span { display:block; height:100%; background:var(--ok); transition:width .4s; }
.chart { margin-top:6px; }
.chart .label { display:flex; justify-content:space-between; font-size:11px; color:var(--muted); }
.chart .label b { color:var(--ink); font-weight:600; font-variant-numeric:tabular-nums; }
canvas { display:block; width:100%; height:90px; }
canvas.small { height:54px; }
.sizing { display:flex; flex-wrap:wrap; gap:4px 12px; margin-top:8px; font-size:12px; color:var(--muted); }
.sizing b { color:var(--ink); font-variant-numeric:tabular-nums; }
.counters { display:flex; flex-wrap:wrap; gap:4px 12px; margin-top:8px; font-size:11px; color:var(--muted); }
.counters b { color:var(--ink); font-variant-numeric:tabular-nums; }
.empty { color:var(--muted); padding:40px 0; text-align:center; }
`;

const SCRIPT = `
(function () {
  'use strict';
  var config = JSON.parse(document.getElementById('pool-dashboard-config').textContent);
  var url = config.jsonUrl + window.location.search;
  var HISTORY = config.historySamples;
  var P95_WINDOW = 10;
  var PALETTE = ['#2563eb', '#0891b2', '#7c3aed', '#db2777', '#ca8a04', '#059669', '#ea580c'];
  var history = {};
  var cards = {};
  var sections = {};
  var root = document.getElementById('databases');
  var statusEl = document.getElementById('status');
  var bounds = [];

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function fmtMs(v) {
    if (v === null || v === undefined) return '–';
    if (v >= 1000) return (v / 1000).toFixed(v >= 10000 ? 0 : 1) + ' s';
    if (v >= 10) return Math.round(v) + ' ms';
    return (Math.round(v * 100) / 100) + ' ms';
  }
  function css(name) { return getComputedStyle(document.documentElement).getPropertyValue(name).trim(); }

  function percentileFromBuckets(counts, p, maxMs) {
    var total = 0, i;
    for (i = 0; i < counts.length; i++) total += counts[i];
    if (total === 0) return null;
    var rank = Math.ceil(p / 100 * total), seen = 0;
    for (i = 0; i < counts.length; i++) {
      seen += counts[i];
      if (seen >= rank) return bounds[i] === null ? maxMs : Math.min(bounds[i], maxMs);
    }
    return maxMs;
  }

  function sizeCanvas(canvas) {
    var ratio = window.devicePixelRatio || 1;
    var w = Math.max(1, Math.round(canvas.clientWidth * ratio));
    var h = Math.max(1, Math.round(canvas.clientHeight * ratio));
    if (canvas.width !== w || canvas.height !== h) { canvas.width = w; canvas.height = h; }
    return ratio;
  }

  function drawSeries(canvas, samples, series, opts) {
    var ratio = sizeCanvas(canvas);
    var ctx = canvas.getContext('2d');
    var w = canvas.width, h = canvas.height, pad = 4 * ratio;
    ctx.clearRect(0, 0, w, h);
    ctx.fillStyle = '#fafbfc';
    ctx.fillRect(0, 0, w, h);
    var top = opts.min || 1, i, j;
    for (i = 0; i < samples.length; i++) {
      for (j = 0; j < series.length; j++) {
        var v = samples[i][series[j].key];
        if (v !== null && v !== undefined && v > top) top = v;
      }
      if (opts.ceilingKey && samples[i][opts.ceilingKey] > top) top = samples[i][opts.ceilingKey];
    }
    top = top * 1.1;
    var slots = Math.min(HISTORY, Math.max(60, samples.length));
    var step = (w - 2 * pad) / Math.max(1, slots - 1);
    var x0 = w - pad - (samples.length - 1) * step;
    function y(v) { return h - pad - (v / top) * (h - 2 * pad); }
    ctx.strokeStyle = '#eceef1';
    ctx.lineWidth = ratio;
    for (i = 1; i < 4; i++) { ctx.beginPath(); ctx.moveTo(0, h * i / 4); ctx.lineTo(w, h * i / 4); ctx.stroke(); }
    if (opts.ceilingKey && samples.length) {
      ctx.strokeStyle = css('--max');
      ctx.setLineDash([4 * ratio, 4 * ratio]);
      ctx.beginPath();
      ctx.moveTo(x0, y(samples[0][opts.ceilingKey]));
      for (i = 1; i < samples.length; i++) ctx.lineTo(x0 + i * step, y(samples[i][opts.ceilingKey]));
      ctx.stroke();
      ctx.setLineDash([]);
    }
    for (j = 0; j < series.length; j++) {
      var s = series[j], started = false;
      ctx.strokeStyle = s.color;
      ctx.lineWidth = 2 * ratio;
      ctx.beginPath();
      for (i = 0; i < samples.length; i++) {
        var val = samples[i][s.key];
        if (val === null || val === undefined) { started = false; continue; }
        if (!started) { ctx.moveTo(x0 + i * step, y(val)); started = true; } else ctx.lineTo(x0 + i * step, y(val));
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

  function chart(parent, name, title, small) {
    var box = el('div', 'chart');
    var label = el('div', 'label');
    var t = el('span');
    (Array.isArray(title) ? title : [[title]]).forEach(function (part, i) {
      if (i > 0) t.appendChild(document.createTextNode(' · '));
      var s = el('span', null, part[0]);
      if (part[1]) s.style.color = part[1];
      t.appendChild(s);
    });
    var windowLabel = el('span', null, '');
    t.appendChild(windowLabel);
    var value = el('b', null, '–');
    label.appendChild(t);
    label.appendChild(value);
    var canvas = el('canvas', small ? 'small' : null);
    canvas.setAttribute('data-chart', name);
    canvas.setAttribute('data-points', '0');
    box.appendChild(label);
    box.appendChild(canvas);
    parent.appendChild(box);
    return { box: box, canvas: canvas, value: value, windowLabel: windowLabel };
  }

  function buildSection(db) {
    var section = el('section', 'database');
    section.setAttribute('data-database', db);
    var h = el('h2', null, 'Database ' + db);
    var meta = el('div', 'meta');
    var split = el('div', 'split');
    split.setAttribute('data-routing-split', db);
    var splitTitle = el('div', 'title', 'Routing split — reads per node, last 60 s');
    var bar = el('div', 'bar');
    var legend = el('div', 'legend');
    split.appendChild(splitTitle);
    split.appendChild(bar);
    split.appendChild(legend);
    var grid = el('div', 'nodes');
    section.appendChild(h);
    section.appendChild(meta);
    section.appendChild(split);
    section.appendChild(grid);
    root.appendChild(section);
    sections[db] = { section: section, meta: meta, split: split, bar: bar, legend: legend, grid: grid, segments: {} };
    return sections[db];
  }

  function buildCard(db, name, node, grid) {
    var card = el('article', 'node');
    card.setAttribute('data-database', db);
    card.setAttribute('data-node', name);
    card.setAttribute('data-role', node.role);
    var head = el('div', 'head');
    head.appendChild(el('b', null, name));
    head.appendChild(el('span', 'role', node.role + ' · ' + node.address));
    var badges = el('span', 'badges');
    head.appendChild(badges);
    card.appendChild(head);
    var numbers = el('div', 'numbers');
    var fields = [['inuse', 'in use'], ['idle', 'idle'], ['waiting', 'waiting'], ['size', 'open / max']];
    var values = {};
    fields.forEach(function (f) {
      var d = el('div');
      var v = el('div', 'v ' + f[0], '–');
      v.setAttribute('data-value', f[0]);
      d.appendChild(v);
      d.appendChild(el('div', 'k', f[1]));
      numbers.appendChild(d);
      values[f[0]] = v;
    });
    card.appendChild(numbers);
    var usage = el('div', 'usage');
    var usageBar = el('span');
    usage.appendChild(usageBar);
    card.appendChild(usage);
    var connections = chart(card, 'connections', [['in use', css('--inuse')], ['idle', css('--idle')], ['waiting', css('--waiting')], ['max (dashed)', css('--max')]]);
    var acquire = chart(card, 'acquire-p95', 'acquire p95 of the last ' + P95_WINDOW + ' s', true);
    var lag = node.role === 'replica' ? chart(card, 'lag', 'replication lag', true) : null;
    var sizing = el('div', 'sizing');
    sizing.setAttribute('data-sizing', name);
    card.appendChild(sizing);
    var counters = el('div', 'counters');
    card.appendChild(counters);
    grid.appendChild(card);
    return { card: card, badges: badges, values: values, usageBar: usageBar, connections: connections, acquire: acquire, lag: lag, sizing: sizing, counters: counters };
  }

  function badge(parent, text, cls) { parent.appendChild(el('span', 'badge ' + cls, text)); }

  function setData(e, data) {
    for (var k in data) e.setAttribute('data-' + k, data[k] === null || data[k] === undefined ? '' : String(data[k]));
  }

  function update(snapshot) {
    bounds = snapshot.latencyBucketsMs;
    var seen = {};
    var dbNames = Object.keys(snapshot.databases);
    if (dbNames.length === 0 && !root.querySelector('.empty')) root.appendChild(el('p', 'empty', 'No database is registered.'));
    dbNames.forEach(function (db) {
      var dbSnap = snapshot.databases[db];
      var sec = sections[db] || buildSection(db);
      var topo = dbSnap.topology;
      var topoText = !topo ? '' : ' · primary ' + topo.primary + (topo.writable ? ' since ' + new Date(topo.primarySince).toISOString().slice(11, 19) + ' UTC' : ' (not answering: writes fail)') +
        (topo.fenced.length ? ' · split brain: ' + topo.fenced.join(', ') + ' fenced' : '');
      sec.meta.textContent = 'preset ' + dbSnap.preset + ' · strategy ' + dbSnap.strategy + ' · fallback to primary ' + (dbSnap.fallbackToPrimary ? 'on' : 'off') + ' · max lag ' + fmtMs(dbSnap.maxReplicationLagMs) + topoText;
      var nodeNames = Object.keys(dbSnap.nodes);
      var readsByNode = {};
      var readsTotal = 0;
      nodeNames.forEach(function (name, index) {
        var n = dbSnap.nodes[name];
        var key = db + '/' + name;
        seen[key] = true;
        var c = cards[key] || (cards[key] = buildCard(db, name, n, sec.grid));
        var h = history[key] || (history[key] = []);
        var prev = h.length ? h[h.length - 1] : null;
        var back = h.length >= P95_WINDOW ? h[h.length - P95_WINDOW] : (h.length ? h[0] : null);
        var delta = n.acquireMs.buckets.map(function (v, i) { return back ? v - back.buckets[i] : v; });
        var p95Recent = percentileFromBuckets(delta, 95, n.acquireMs.max);
        var sample = { at: snapshot.at, inUse: n.inUse, idle: n.idle, waiting: n.waiting, size: n.size, max: n.max,
          p95: p95Recent, lag: n.lagMs, reads: n.counters.routedReads, buckets: n.acquireMs.buckets };
        if (!prev || prev.at !== snapshot.at) h.push(sample);
        while (h.length > HISTORY) h.shift();
        var minuteAgo = h.length > 60 ? h[h.length - 61] : h[0];
        readsByNode[name] = { reads: n.counters.routedReads - minuteAgo.reads, color: n.role === 'primary' ? '#64748b' : PALETTE[index % PALETTE.length] };
        readsTotal += readsByNode[name].reads;

        c.values.inuse.textContent = n.inUse;
        c.values.idle.textContent = n.idle;
        c.values.waiting.textContent = n.waiting;
        c.values.size.textContent = n.size + ' / ' + n.max;
        var usagePct = Math.round(n.usage * 100);
        c.usageBar.style.width = Math.min(100, usagePct) + '%';
        c.usageBar.style.background = n.usage > 0.9 ? css('--bad') : n.usage > 0.8 ? css('--warn') : css('--ok');
        var bad = n.topologyRole === 'fenced' || n.banned || n.breaker.state !== 'closed' || n.usage > 0.9 || (n.idle === 0 && n.waiting > 0);
        var warn = !bad && (n.usage > 0.8 || n.waiting > 0 || (n.lagMs !== null && dbSnap.maxReplicationLagMs > 0 && n.lagMs > dbSnap.maxReplicationLagMs / 2));
        c.card.className = 'node' + (bad ? ' bad' : warn ? ' warn' : '');
        c.badges.textContent = '';
        if (n.topologyRole) badge(c.badges, n.topologyRole, n.topologyRole === 'fenced' || n.topologyRole === 'unknown' ? 'bad' : n.topologyRole === 'primary' ? 'ok' : '');
        if (n.banned) badge(c.badges, 'banned', 'bad');
        if (n.breaker.state !== 'closed') badge(c.badges, 'breaker ' + n.breaker.state, 'bad');
        if (!n.banned && n.breaker.state === 'closed') badge(c.badges, 'up', 'ok');
        badge(c.badges, usagePct + '% used', n.usage > 0.9 ? 'bad' : n.usage > 0.8 ? 'warn' : '');
        var z = n.sizing;
        if (z && z.advice === 'saturated') badge(c.badges, 'saturated', 'warn');
        if (z && z.advice === 'over-provisioned') badge(c.badges, 'over-provisioned', 'warn');
        c.sizing.textContent = '';
        if (z) {
          [['suggested max', z.suggestedMax === null ? '–' : z.suggestedMax + (z.limitedByBudget ? ' (budget)' : '')],
            ['load', z.busiest ? String(z.busiest.load) : '0'], ['peak in use', String(z.peakInUse)],
            ['waiting', Math.round(z.waitingShare * 100) + '% of ' + Math.round(z.coveredMs / 1000) + ' s'],
            ['acquire p95', fmtMs(z.acquireMs.p95)], ['advice', z.advice]].forEach(function (pair) {
            var s = el('span', null, pair[0] + ' ');
            s.appendChild(el('b', null, pair[1]));
            c.sizing.appendChild(s);
          });
        }
        setData(c.sizing, z ? { 'suggested-max': z.suggestedMax, load: z.busiest ? z.busiest.load : 0, 'peak-in-use': z.peakInUse,
          'waiting-share': z.waitingShare, advice: z.advice, 'budget-max': z.budgetMax } : { advice: 'off' });

        drawSeries(c.connections.canvas, h, [
          { key: 'inUse', color: css('--inuse'), fill: true },
          { key: 'idle', color: css('--idle') },
          { key: 'waiting', color: css('--waiting') }
        ], { ceilingKey: 'max', min: 1 });
        setData(c.connections.canvas, { 'last-in-use': n.inUse, 'last-idle': n.idle, 'last-waiting': n.waiting, 'last-max': n.max });
        c.connections.windowLabel.textContent = ', last ' + (h.length < 120 ? h.length + ' s' : Math.round(h.length / 60) + ' min');
        c.connections.value.textContent = n.inUse + ' · ' + n.idle + ' · ' + n.waiting;
        drawSeries(c.acquire.canvas, h, [{ key: 'p95', color: css('--p95'), fill: true }], { min: 1 });
        setData(c.acquire.canvas, { last: p95Recent });
        c.acquire.value.textContent = fmtMs(p95Recent) + ' (all time ' + fmtMs(n.acquireMs.p95) + ')';
        if (c.lag) {
          drawSeries(c.lag.canvas, h, [{ key: 'lag', color: css('--lag'), fill: true }], { min: 10 });
          setData(c.lag.canvas, { last: n.lagMs });
          var peak = h.reduce(function (m, x) { return x.lag !== null && x.lag > m ? x.lag : m; }, 0);
          c.lag.value.textContent = n.lagMs === null ? 'unknown' : fmtMs(n.lagMs) + (n.lagBytes ? ' · ' + n.lagBytes + ' B' : '') + ' (peak ' + fmtMs(peak) + ')';
          c.lag.canvas.setAttribute('data-peak', String(peak));
        }
        var k = n.counters;
        c.counters.textContent = '';
        [['acquired', k.acquired], ['reads', k.routedReads], ['writes', k.routedWrites], ['fallbacks', k.fallbacks], ['timeouts', k.acquireTimeouts],
          ['errors', k.errors], ['leaks', k.leaks], ['slow', k.slowQueries], ['evictions', k.evictions], ['bans', k.bans],
          ['prepared hits', k.preparedHits], ['prepared misses', k.preparedMisses], ['prepared evicted', k.preparedEvictions], ['prepared invalidated', k.preparedInvalidations]].forEach(function (pair) {
          var s = el('span', null, pair[0] + ' ');
          s.appendChild(el('b', null, String(pair[1])));
          c.counters.appendChild(s);
        });
        setData(c.card, {
          at: snapshot.at, size: n.size, idle: n.idle, 'in-use': n.inUse, waiting: n.waiting, min: n.min, max: n.max,
          usage: n.usage, 'acquire-p50': n.acquireMs.p50, 'acquire-p95': n.acquireMs.p95, 'acquire-p99': n.acquireMs.p99,
          'acquire-p95-recent': p95Recent, 'lag-ms': n.lagMs, 'lag-bytes': n.lagBytes, banned: n.banned, breaker: n.breaker.state,
          available: n.available, acquired: k.acquired, 'routed-reads': k.routedReads, 'routed-writes': k.routedWrites,
          fallbacks: k.fallbacks, timeouts: k.acquireTimeouts, errors: k.errors, leaks: k.leaks, 'slow-queries': k.slowQueries,
          'prepared-hits': k.preparedHits, 'prepared-misses': k.preparedMisses, 'prepared-evictions': k.preparedEvictions, 'prepared-invalidations': k.preparedInvalidations,
          samples: h.length, 'suggested-max': z ? z.suggestedMax : null, 'sizing-advice': z ? z.advice : 'off'
        });
      });

      sec.legend.textContent = '';
      nodeNames.forEach(function (name) {
        var r = readsByNode[name];
        var share = readsTotal > 0 ? r.reads / readsTotal : 0;
        var seg = sec.segments[name];
        if (!seg) { seg = sec.segments[name] = el('span'); sec.bar.appendChild(seg); }
        seg.style.width = (share * 100).toFixed(2) + '%';
        seg.style.background = r.color;
        setData(seg, { node: name, reads: r.reads, share: Math.round(share * 1000) / 1000 });
        var item = el('span');
        var sw = el('i');
        sw.style.background = r.color;
        item.appendChild(sw);
        item.appendChild(document.createTextNode(name + ' ' + Math.round(share * 100) + '% (' + r.reads + ')'));
        sec.legend.appendChild(item);
      });
      setData(sec.split, { 'reads-total': readsTotal });
    });
    Object.keys(cards).forEach(function (key) {
      if (!seen[key]) { cards[key].card.remove(); delete cards[key]; delete history[key]; }
    });
    document.body.setAttribute('data-updated-at', String(snapshot.at));
    document.body.setAttribute('data-polls', String(Number(document.body.getAttribute('data-polls') || '0') + 1));
  }

  function poll() {
    var started = Date.now();
    fetch(url, { cache: 'no-store', credentials: 'same-origin', headers: { accept: 'application/json' } })
      .then(function (res) {
        if (!res.ok) throw new Error('HTTP ' + res.status);
        return res.json();
      })
      .then(function (snapshot) {
        update(snapshot);
        statusEl.className = 'status';
        statusEl.textContent = 'updated ' + new Date(snapshot.at).toLocaleTimeString() + ' · every 1 s';
        document.body.setAttribute('data-status', 'ok');
      })
      .catch(function (err) {
        statusEl.className = 'status error';
        statusEl.textContent = 'Cannot load ' + config.jsonUrl + ': ' + err.message + ' — retrying';
        document.body.setAttribute('data-status', 'error');
      })
      .then(function () {
        setTimeout(poll, Math.max(0, 1000 - (Date.now() - started)));
      });
  }
  poll();
})();
`;

export interface DashboardPageOptions {
  /** URL (absolute path) of the JSON endpoint the page polls. */
  jsonUrl: string;
  /** Samples kept per node (one per second). Default: 300 (5 minutes). */
  historySamples?: number;
}

function scriptJson(value: unknown): string {
  return JSON.stringify(value).replace(/</g, '\\u003c').replace(/>/g, '\\u003e').replace(/&/g, '\\u0026');
}

export function renderDashboardPage(options: DashboardPageOptions): string {
  const config = { jsonUrl: options.jsonUrl, historySamples: options.historySamples ?? 300 };
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<link rel="icon" href="data:,">
<title>Database pools — live</title>
<style>${STYLE}</style>
</head>
<body data-status="loading" data-polls="0">
<header><h1>Database pools — live</h1><span id="status" class="status">loading…</span></header>
<main id="databases"></main>
<script type="application/json" id="pool-dashboard-config">${scriptJson(config)}</script>
<script>${SCRIPT}</script>
</body>
</html>
`;
}
