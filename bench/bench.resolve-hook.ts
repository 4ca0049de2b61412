import type { ResolveHook } from 'node:module';

const LIBRARY = new URL('../lib/index.js', import.meta.url).href;

export const resolve: ResolveHook = (specifier, context, nextResolve) =>
  specifier === 'nestjs-pg-pools' ? { url: LIBRARY, shortCircuit: true, format: 'module' } : nextResolve(specifier, context);
