// Every error this library throws, one file per concern under errors/.
export * from './errors/pool-error.js';
export * from './errors/acquire.errors.js';
export * from './errors/node.errors.js';
export * from './errors/routing.errors.js';
export * from './errors/transaction.errors.js';
export * from './errors/session.errors.js';
