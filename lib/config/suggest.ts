/** Optimal string alignment distance (a swap of two neighbours counts 1), case-insensitive. */
function editDistance(a: string, b: string): number {
  const x = a.toLowerCase();
  const y = b.toLowerCase();
  const d: number[][] = Array.from({ length: x.length + 1 }, (_, i) => [i, ...Array<number>(y.length).fill(0)]);
  for (let j = 1; j <= y.length; j++) d[0]![j] = j;
  for (let i = 1; i <= x.length; i++) {
    for (let j = 1; j <= y.length; j++) {
      const cost = x[i - 1] === y[j - 1] ? 0 : 1;
      let best = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && x[i - 1] === y[j - 2] && x[i - 2] === y[j - 1]) best = Math.min(best, d[i - 2]![j - 2]! + 1);
      d[i]![j] = best;
    }
  }
  return d[x.length]![y.length]!;
}

/** The known key a typo most likely meant: a close spelling, or (with `prefixes`) a longer/shorter form. */
export function closest(key: string, known: Iterable<string>, prefixes = true): string | undefined {
  const lower = key.toLowerCase();
  let best: string | undefined;
  let bestDistance = key.length <= 4 ? 1 : 2;
  for (const k of known) {
    const distance = editDistance(key, k);
    if (distance <= bestDistance && (best === undefined || distance < bestDistance)) {
      best = k;
      bestDistance = distance;
    }
  }
  if (best !== undefined || !prefixes) return best;
  for (const k of known) {
    const kl = k.toLowerCase();
    if (lower.length >= 3 && (kl.startsWith(lower) || lower.startsWith(kl))) return k;
  }
  return undefined;
}
