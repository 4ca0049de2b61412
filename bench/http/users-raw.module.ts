import { Controller, Get, Inject, Injectable, Module, NotFoundException, Param, type OnApplicationShutdown } from '@nestjs/common';
import pg from 'pg';
import { PingController } from '../../sample-app/src/ping.controller.js';
import { parseId, type Served, type User } from '../../sample-app/src/users/users.dto.js';
import { benchCluster, HTTP_DATABASE, rawPoolConfig } from '../bench.config.js';
import { librarySessionOptions } from '../bench.module.js';

const PG_POOL = Symbol('PG_POOL');

/** The statement of the sample's UsersService.find, unchanged. */
const FIND_USER_SQL =
  'SELECT inet_server_port() AS "servedByPort", pg_is_in_recovery() AS "servedByReplica", ' +
  'u.id, u.name, u.email, u.created_at AS "createdAt", u.updated_at AS "updatedAt" ' +
  'FROM (SELECT 1) AS here LEFT JOIN users AS u ON u.id = $1';

interface UserRow {
  servedByPort: number;
  servedByReplica: boolean;
  id: number | null;
  name: string;
  email: string;
  createdAt: Date;
  updatedAt: Date;
}

@Injectable()
class PoolCloser implements OnApplicationShutdown {
  constructor(@Inject(PG_POOL) private readonly pool: pg.Pool) {}

  async onApplicationShutdown(): Promise<void> {
    await this.pool.end();
  }
}

/** The sample's `GET /users/:id` (same id parsing, statement, 404 and body) on a hand-written pool. */
@Controller('users')
export class RawUsersController {
  constructor(@Inject(PG_POOL) private readonly pool: pg.Pool) {}

  @Get(':id')
  async find(@Param('id') id: string): Promise<Served<User>> {
    const userId = parseId(id);
    const { rows } = await this.pool.query<UserRow>(FIND_USER_SQL, [userId]);
    const row = rows[0]!;
    if (row.id === null) throw new NotFoundException(`Cannot find user ${userId} because no user has this id.`);
    return {
      data: { id: row.id, name: row.name, email: row.email, createdAt: row.createdAt, updatedAt: row.updatedAt },
      servedBy: { port: row.servedByPort, replica: row.servedByReplica },
    };
  }
}

/** What people write by hand: one `pg.Pool({ max: 10 })` provider, here on replica1 like the sample's reads. */
@Module({
  providers: [
    {
      provide: PG_POOL,
      useFactory: () =>
        new pg.Pool({ ...rawPoolConfig(benchCluster.ports.replica1, 'bench-raw-http', librarySessionOptions('replica')), database: HTTP_DATABASE }),
    },
    PoolCloser,
  ],
  controllers: [RawUsersController, PingController],
})
export class RawUsersModule {}
