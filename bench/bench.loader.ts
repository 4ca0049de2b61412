import { register } from 'node:module';

// `node --import bench/.tmp/bench/bench.loader.js …`: the sample app imports `nestjs-pg-pools`;
// this makes that the library compiled next to the benchmarks, not a stale dist/.
register('./bench.resolve-hook.js', import.meta.url);
