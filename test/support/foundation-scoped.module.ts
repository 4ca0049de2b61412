import { Module } from '@nestjs/common';
import { PoolModule } from 'nestjs-pg-pools';
import { nodeOptions } from './cluster.js';
import { ProbeController, ProbeFeatureModule, ProbeService } from './foundation-probe.js';

export const SCOPED_APP_NAME = 'fnd-mod-scoped';
export const GLOBAL_APP_NAME = 'fnd-mod-global';

const scopedPool = (lazy = false) =>
  PoolModule.forRoot({ primary: nodeOptions('primary'), applicationName: SCOPED_APP_NAME, isGlobal: false, lazy, min: 1, max: 2, env: {} });

/** isGlobal: false — the module that imports PoolModule can inject the database. */
@Module({ imports: [scopedPool()], controllers: [ProbeController], providers: [ProbeService] })
export class ScopedFixtureModule {}

/**
 * isGlobal: false — a sibling feature module that does not import PoolModule cannot. Lazy, because
 * Nest keeps no handle on providers it created before a failed start, so a warmed-up pool would
 * stay open.
 */
@Module({ imports: [scopedPool(true), ProbeFeatureModule] })
export class ScopedSiblingFixtureModule {}

/** isGlobal defaults to true — the sibling feature module can. */
@Module({
  imports: [PoolModule.forRoot({ primary: nodeOptions('primary'), applicationName: GLOBAL_APP_NAME, min: 1, max: 2, env: {} }), ProbeFeatureModule],
})
export class GlobalFixtureModule {}
