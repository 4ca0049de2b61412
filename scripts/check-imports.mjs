#!/usr/bin/env node
// The import rules of lib/, run by `npm run lint` (so by `npm test`):
//   1. no import cycle between files: type-only imports and re-exports count, because a cycle of
//      types is still a cycle of knowledge (each side must change when the other does);
//   2. folders import only downward in LAYERS (a folder may import its own files freely).
// A lower module that needs something of a higher one declares the narrow interface it needs and
// the higher one implements it (`TopologyHost`, `NodeHost`, `TransactionHost`, `ReplicaSetHost`).
// Usage: node scripts/check-imports.mjs [root]   (root defaults to lib; exit 1 on a violation)
import fs from 'node:fs';
import path from 'node:path';
import ts from 'typescript';

/**
 * Top to bottom. An entry names folders (`core/`), files (`index.ts`, `core/sizing-advisor.ts`) or a
 * suffix (an option parser, `*.options.ts`, is configuration and Nest glue, `*.middleware.ts`, is
 * module wiring wherever they live); a file takes the most specific entry that matches it (file,
 * then suffix, then folder).
 */
export const LAYERS = [
  ['module', ['index.ts', 'pool.module.ts', 'pool-root.module.ts', 'pool-core.module.ts', 'database.service.ts', 'pool.decorators.ts', 'pool.utils.ts', '*.middleware.ts', '*.interceptor.ts']],
  ['health, metrics', ['health/', 'metrics/', 'core/sizing-advisor.ts']],
  ['core', ['core/']],
  ['cluster', ['cluster/']],
  ['transactions', ['transactions/']],
  ['routing', ['routing/']],
  ['pool', ['pool/']],
  ['config', ['config/', '*.options.ts']],
  ['session', ['session/']],
  ['declarations, errors', ['pool.interfaces.ts', 'pool-sections.interfaces.ts', 'pool.exceptions.ts', 'pool.events.ts', 'pool.constants.ts', 'errors/']],
];

/**
 * Known violations of lib/ still to remove, each written as the checker prints it. An entry that
 * no longer occurs fails the check too, so the lists only shrink.
 */
export const KNOWN_CYCLES = [];
export const KNOWN_UPWARD = [];

/** Every `.ts` file under `root` but specs, as paths relative to `root` with `/` separators. */
export function sourceFiles(root) {
  return fs
    .readdirSync(root, { recursive: true })
    .map((f) => String(f).split(path.sep).join('/'))
    .filter((f) => f.endsWith('.ts') && !f.endsWith('.spec.ts') && !f.endsWith('.d.ts'))
    .sort();
}

/** file -> the files of `root` it imports (static, dynamic, type-only and re-exports alike). */
export function importGraph(root) {
  const files = sourceFiles(root);
  const known = new Set(files);
  const graph = new Map();
  for (const file of files) {
    const { importedFiles } = ts.preProcessFile(fs.readFileSync(path.join(root, file), 'utf8'), true, true);
    const targets = new Set();
    for (const { fileName } of importedFiles) {
      if (!fileName.startsWith('.')) continue;
      const target = path.posix.normalize(path.posix.join(path.posix.dirname(file), fileName)).replace(/\.js$/, '.ts');
      const resolved = known.has(target) ? target : known.has(`${target}/index.ts`) ? `${target}/index.ts` : undefined;
      if (resolved !== undefined && resolved !== file) targets.add(resolved);
    }
    graph.set(file, [...targets].sort());
  }
  return graph;
}

/** The layer index of `file` (0 is the top), or `undefined` when no entry of LAYERS matches it. */
export function layerOf(file, layers = LAYERS) {
  let best;
  layers.forEach(([, patterns], index) => {
    for (const p of patterns) {
      const score = p === file ? 3 : p.startsWith('*') && file.endsWith(p.slice(1)) ? 2 : p.endsWith('/') && file.startsWith(p) ? 1 : 0;
      if (score > 0 && (best === undefined || score > best.score)) best = { score, index };
    }
  });
  return best?.index;
}

/** The strongly connected components of more than one file (Tarjan), each as one cycle through them. */
export function findCycles(graph) {
  let next = 0;
  const index = new Map();
  const low = new Map();
  const stack = [];
  const onStack = new Set();
  const components = [];
  const visit = (v) => {
    index.set(v, next);
    low.set(v, next);
    next++;
    stack.push(v);
    onStack.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v), low.get(w)));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v), index.get(w)));
    }
    if (low.get(v) !== index.get(v)) return;
    const component = [];
    let w;
    do {
      w = stack.pop();
      onStack.delete(w);
      component.push(w);
    } while (w !== v);
    if (component.length > 1) components.push(component.sort());
  };
  for (const v of graph.keys()) if (!index.has(v)) visit(v);
  return components.map((component) => cycleThrough(graph, component));
}

/** The shortest cycle from the first file of `component` back to itself, inside the component. */
function cycleThrough(graph, component) {
  const inside = new Set(component);
  const start = component[0];
  const previous = new Map([[start, undefined]]);
  const queue = [start];
  while (queue.length > 0) {
    const v = queue.shift();
    for (const w of graph.get(v) ?? []) {
      if (!inside.has(w)) continue;
      if (w === start) {
        const route = [start];
        for (let u = v; u !== start; u = previous.get(u)) route.splice(1, 0, u);
        return [...route, start];
      }
      if (previous.has(w)) continue;
      previous.set(w, v);
      queue.push(w);
    }
  }
  return component;
}

/** Every violation under `root`: cycles, upward imports and files in no layer, as printable lines. */
export function violations(root, { layers = LAYERS, knownCycles = [], knownUpward = [] } = {}) {
  const graph = importGraph(root);
  const found = [];
  const cycles = findCycles(graph).map((c) => c.join(' -> '));
  const upward = [];
  for (const [file, targets] of graph) {
    const from = layerOf(file, layers);
    if (from === undefined) {
      found.push(`no layer: ${file} matches no entry of LAYERS in scripts/check-imports.mjs`);
      continue;
    }
    for (const target of targets) {
      const to = layerOf(target, layers);
      if (to !== undefined && to < from) upward.push(`${file} (${layers[from][0]}) imports ${target} (${layers[to][0]})`);
    }
  }
  const report = (kind, list, seen) => {
    for (const entry of list) if (!seen.includes(entry)) found.push(`stale: "${entry}" no longer occurs; remove it from the known ${kind}s`);
    for (const line of seen) if (!list.includes(line)) found.push(`${kind}: ${line}`);
  };
  report('cycle', knownCycles, cycles);
  report('upward', knownUpward, upward);
  return found;
}

if (process.argv[1] !== undefined && path.resolve(process.argv[1]) === path.resolve(new URL(import.meta.url).pathname)) {
  const root = process.argv[2] ?? 'lib';
  const own = path.resolve(root) === path.resolve('lib');
  const found = violations(root, own ? { knownCycles: KNOWN_CYCLES, knownUpward: KNOWN_UPWARD } : {});
  for (const line of found) console.error(`check-imports: ${line}`);
  if (found.length > 0) {
    console.error(
      `check-imports: ${found.length} violation(s) of the import rules of ${root}/. Please make sure that a lower module declares the ` +
        'interface it needs instead of importing the module above it (see the comment at the top of scripts/check-imports.mjs).',
    );
    process.exit(1);
  }
}
