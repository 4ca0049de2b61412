// Base class of every error this library throws, and the configuration error thrown at startup.

/** Base class of every error this library throws. */
export class PoolError extends Error {
  override name = 'PoolError';
}

/** A module option or `DB_*` environment variable is invalid. Thrown at startup. */
export class PoolConfigurationError extends PoolError {
  override name = 'PoolConfigurationError';
  constructor(
    readonly field: string,
    readonly expected: string,
    readonly given: string,
    hint?: string,
  ) {
    super(`Invalid ${field}: expected ${expected}, got ${given}.${hint ? ` ${hint}` : ''}`);
  }
}
