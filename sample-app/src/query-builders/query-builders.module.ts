import { Module } from '@nestjs/common';
import { DrizzleModule } from './drizzle.module.js';
import { KyselyModule } from './kysely.module.js';
import { QueryBuildersController } from './query-builders.controller.js';

/** /qb/kysely/users and /qb/drizzle/users: the users endpoints written with Kysely and Drizzle on db.routedPool. */
@Module({
  imports: [KyselyModule, DrizzleModule],
  controllers: [QueryBuildersController],
})
export class QueryBuildersModule {}
