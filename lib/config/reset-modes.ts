/**
 * When a connection given back is reset before it serves anyone else: `'auto'` after a checkout
 * that sent a statement able to change session state, `'always'` after every checkout of a
 * caller, `'never'` not at all.
 */
export const RESET_MODES = ['auto', 'always', 'never'] as const;

export type ResetOnRelease = (typeof RESET_MODES)[number];
