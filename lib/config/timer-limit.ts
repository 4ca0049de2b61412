/** The longest delay `setTimeout` / `setInterval` accept: Node fires a larger one after 1 ms. Every `…Ms` option is bounded by it. */
export const MAX_TIMER_MS = 2_147_483_647;

/** The expected form of a millisecond option, for `PoolConfigurationError`. */
export function msRange(min: number): string {
  return `an integer from ${min} to ${MAX_TIMER_MS} (the longest delay a Node.js timer can wait, about 24.8 days)`;
}
