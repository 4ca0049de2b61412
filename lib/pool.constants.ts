export const DEFAULT_DATABASE = 'default';
export const READ_ONLY_METADATA = 'nestjs-pg-pools:read-only';
export const TRANSACTIONAL_METADATA = 'nestjs-pg-pools:transactional';
export const WITH_SESSION_METADATA = 'nestjs-pg-pools:with-session';
export const DEFAULT_APPLICATION_NAME = 'nestjs-pg-pools';
export const DEFAULT_CONSISTENCY_HEADER = 'x-pg-consistency-token';
export const MIN_LEAK_DETECTION_THRESHOLD_MS = 2000;
