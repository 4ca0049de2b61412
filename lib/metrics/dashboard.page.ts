import { DASHBOARD_SCRIPT } from './dashboard/browser.compiled.js';
import type { DashboardConfig, SnapshotView } from './dashboard/snapshot-view.js';
import type { PoolMetricsSnapshot } from './metrics.snapshot.js';

/**
 * The live dashboard: one self-contained HTML page (inline CSS and JS, no external resources)
 * that polls the JSON endpoint every second and draws, per node, the connections (in use / idle /
 * waiting against max), the acquire p95 of the last seconds, the replica lag, the load sizing
 * advice (suggested max, load, peak) and the routing split of reads. Every card and chart carries
 * data-* attributes with the numbers it shows. The script is lib/metrics/dashboard/browser.ts,
 * compiled (scripts/build-dashboard.mjs).
 */

/** Fails the type check when the body of `GET /metrics/db-pool` no longer gives what the page reads. */
type Fits<T extends true> = T;
type _SnapshotFitsThePage = Fits<PoolMetricsSnapshot extends SnapshotView ? true : false>;

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
  const config: DashboardConfig = { jsonUrl: options.jsonUrl, historySamples: options.historySamples ?? 300 };
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
<script>${DASHBOARD_SCRIPT}</script>
</body>
</html>
`;
}
