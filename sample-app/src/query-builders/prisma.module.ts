import { Inject, Injectable, Module, type OnModuleDestroy } from '@nestjs/common';
import { PrismaPg } from '@prisma/adapter-pg';
import { DatabaseService } from 'nestjs-pg-pools';
import { PrismaClient } from './prisma/generated/client.js';

export const PRISMA = Symbol('PRISMA');
export const InjectPrisma = (): ParameterDecorator => Inject(PRISMA);

/** Disconnects the client at shutdown: that ends nothing of the pools, which the PoolModule owns. */
@Injectable()
class PrismaLifecycle implements OnModuleDestroy {
  constructor(@InjectPrisma() private readonly prisma: PrismaClient) {}

  onModuleDestroy(): Promise<void> {
    return this.prisma.$disconnect();
  }
}

/**
 * Prisma 7's generated client (sample-app/prisma/schema.prisma, `npm run prisma:generate`) on
 * `db.routedPool` through @prisma/adapter-pg: its reads go to a replica under @ReadOnly(), its
 * `$transaction` takes one primary client, and inside @Transactional() it joins the transaction.
 */
@Module({
  providers: [
    {
      provide: PRISMA,
      inject: [DatabaseService],
      useFactory: (db: DatabaseService) => new PrismaClient({ adapter: new PrismaPg(db.routedPool) }),
    },
    PrismaLifecycle,
  ],
  exports: [PRISMA],
})
export class PrismaModule {}
