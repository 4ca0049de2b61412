import { Module } from '@nestjs/common';
import { DrizzleModule } from './drizzle.module.js';
import { KyselyModule } from './kysely.module.js';
import { PrismaController } from './prisma.controller.js';
import { PrismaModule } from './prisma.module.js';
import { QueryBuildersController } from './query-builders.controller.js';

/** /qb/kysely/users, /qb/drizzle/users and /qb/prisma/users: the users endpoints written with Kysely, Drizzle and the Prisma Client on db.routedPool. */
@Module({
  imports: [KyselyModule, DrizzleModule, PrismaModule],
  controllers: [QueryBuildersController, PrismaController],
})
export class QueryBuildersModule {}
