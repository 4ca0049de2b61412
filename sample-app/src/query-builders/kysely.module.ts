import { Inject, Module } from '@nestjs/common';
import { Kysely, PostgresDialect, type ColumnType, type Generated } from 'kysely';
import { DatabaseService } from 'nestjs-pg-pools';

/** The sample's tables as Kysely sees them (created by UsersSchema). */
export interface SampleDatabase {
  users: {
    id: Generated<number>;
    name: string;
    email: string;
    created_at: ColumnType<Date, never, never>;
    updated_at: ColumnType<Date, never, Date>;
  };
  user_events: {
    id: Generated<string>;
    user_id: number;
    kind: 'created' | 'updated' | 'deleted';
    at: ColumnType<Date, never, never>;
  };
}

export const KYSELY = Symbol('KYSELY');
export const InjectKysely = (): ParameterDecorator => Inject(KYSELY);

/**
 * Kysely on `db.routedPool`: a plain provider factory over DatabaseService. Its queries go where the
 * scope says (a replica under @ReadOnly(), the transaction inside @Transactional(), else the primary).
 * Kysely's destroy() ends nothing: the PoolModule owns the pools.
 */
@Module({
  providers: [
    {
      provide: KYSELY,
      inject: [DatabaseService],
      useFactory: (db: DatabaseService) => new Kysely<SampleDatabase>({ dialect: new PostgresDialect({ pool: db.routedPool }) }),
    },
  ],
  exports: [KYSELY],
})
export class KyselyModule {}
