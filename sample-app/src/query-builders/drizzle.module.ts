import { Inject, Module } from '@nestjs/common';
import { drizzle, type NodePgDatabase } from 'drizzle-orm/node-postgres';
import { DatabaseService } from 'nestjs-pg-pools';
import { sampleSchema } from './drizzle.schema.js';

export type SampleDrizzle = NodePgDatabase<typeof sampleSchema>;

export const DRIZZLE = Symbol('DRIZZLE');
export const InjectDrizzle = (): ParameterDecorator => Inject(DRIZZLE);

/**
 * Drizzle (node-postgres driver) on `db.routedPool`: a plain provider factory over DatabaseService,
 * routed by the scope like every query of the library.
 */
@Module({
  providers: [
    {
      provide: DRIZZLE,
      inject: [DatabaseService],
      useFactory: (db: DatabaseService): SampleDrizzle => drizzle({ client: db.routedPool, schema: sampleSchema }),
    },
  ],
  exports: [DRIZZLE],
})
export class DrizzleModule {}
