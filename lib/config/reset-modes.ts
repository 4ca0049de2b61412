/**
 * When a connection given back is reset before it serves anyone else: `'auto'` after a checkout
 * that sent a statement able to change session state, `'always'` after every checkout of a
 * caller, `'never'` not at all.
 */
import type { ResetOnRelease } from '../pool-sections.interfaces.js';

export type { ResetOnRelease };
export const RESET_MODES: readonly ResetOnRelease[] = ['auto', 'always', 'never'];
