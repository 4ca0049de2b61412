export { PoolModule } from './pool.module.js';
export { DatabaseService, type PrimaryAccess, type ReplicaAccess, type TransactionHandle, type QueryInput } from './database.service.js';
export { InjectDatabase, InjectPool, ReadOnly, Transactional } from './pool.decorators.js';
export { getDatabaseToken, getPoolToken, getPoolOptionsToken, recommendPoolSize, type PoolRole } from './pool.utils.js';
export { POOL_PRESETS, type PresetValues } from './config/presets.js';
export * from './pool.interfaces.js';
export * from './pool.exceptions.js';
export type * from './pool.events.js';
export { isConnectionError } from './core/errors.js';
