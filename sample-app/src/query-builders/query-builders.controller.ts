import { Body, ConflictException, Controller, Get, NotFoundException, Param, Post, Res } from '@nestjs/common';
import { eq, sql as dsql } from 'drizzle-orm';
import { sql, type Kysely } from 'kysely';
import { DatabaseService, ReadOnly } from 'nestjs-pg-pools';
import { CONSISTENCY_HEADER } from '../users/users.controller.js';
import { parseCreateUser, parseId, type Served, type User } from '../users/users.dto.js';
import { userEvents, users } from './drizzle.schema.js';
import { InjectDrizzle, type SampleDrizzle } from './drizzle.module.js';
import { InjectKysely, type SampleDatabase } from './kysely.module.js';

interface HeaderSetter {
  setHeader(name: string, value: string): unknown;
}

type UserWithServer = User & { port: number; replica: boolean };

function served({ port, replica, ...user }: UserWithServer): Served<User> {
  return { data: user, servedBy: { port, replica } };
}

function notFound(id: number): NotFoundException {
  return new NotFoundException(`Cannot find user ${id} because no user has this id.`);
}

/** 23505 (unique violation) from pg, or wrapped by Drizzle in its DrizzleQueryError. */
function conflictOr(err: unknown, email: string): unknown {
  const code = (err as { code?: string }).code ?? (err as { cause?: { code?: string } }).cause?.code;
  if (code !== '23505') return err;
  return new ConflictException(`Cannot save the user because the e-mail "${email}" is already taken. Please make sure that every user has a different e-mail.`);
}

/**
 * The users endpoints again, written with Kysely and with Drizzle on `db.routedPool`: the GETs are
 * @ReadOnly() and run on a replica; the POSTs use the builder's own transaction (one primary client,
 * its own BEGIN/COMMIT) and answer with the consistency token, as /users does.
 */
@Controller('qb')
export class QueryBuildersController {
  constructor(
    @InjectKysely() private readonly kysely: Kysely<SampleDatabase>,
    @InjectDrizzle() private readonly drizzle: SampleDrizzle,
    private readonly db: DatabaseService,
  ) {}

  @Get('kysely/users/:id')
  @ReadOnly()
  async kyselyFind(@Param('id') id: string): Promise<Served<User>> {
    const userId = parseId(id);
    const row = await this.kysely
      .selectFrom('users')
      .select(['id', 'name', 'email', 'created_at as createdAt', 'updated_at as updatedAt'])
      .select([sql<number>`inet_server_port()`.as('port'), sql<boolean>`pg_is_in_recovery()`.as('replica')])
      .where('id', '=', userId)
      .executeTakeFirst();
    if (row === undefined) throw notFound(userId);
    return served(row);
  }

  @Post('kysely/users')
  async kyselyCreate(@Body() body: unknown, @Res({ passthrough: true }) response: HeaderSetter): Promise<Served<User>> {
    const input = parseCreateUser(body);
    const row = await this.kysely
      .transaction()
      .execute(async (trx) => {
        const user = await trx
          .insertInto('users')
          .values(input)
          .returning(['id', 'name', 'email', 'created_at as createdAt', 'updated_at as updatedAt'])
          .returning([sql<number>`inet_server_port()`.as('port'), sql<boolean>`pg_is_in_recovery()`.as('replica')])
          .executeTakeFirstOrThrow();
        await trx.insertInto('user_events').values({ user_id: user.id, kind: 'created' }).execute();
        return user;
      })
      .catch((err: unknown) => Promise.reject(conflictOr(err, input.email)));
    await this.#sendConsistencyToken(response);
    return served(row);
  }

  @Get('drizzle/users/:id')
  @ReadOnly()
  async drizzleFind(@Param('id') id: string): Promise<Served<User>> {
    const userId = parseId(id);
    const [row] = await this.drizzle
      .select({ ...userColumns, port: dsql<number>`inet_server_port()`, replica: dsql<boolean>`pg_is_in_recovery()` })
      .from(users)
      .where(eq(users.id, userId));
    if (row === undefined) throw notFound(userId);
    return served(row);
  }

  @Post('drizzle/users')
  async drizzleCreate(@Body() body: unknown, @Res({ passthrough: true }) response: HeaderSetter): Promise<Served<User>> {
    const input = parseCreateUser(body);
    const row = await this.drizzle
      .transaction(async (tx) => {
        const [user] = await tx
          .insert(users)
          .values(input)
          .returning({ ...userColumns, port: dsql<number>`inet_server_port()`, replica: dsql<boolean>`pg_is_in_recovery()` });
        await tx.insert(userEvents).values({ userId: user!.id, kind: 'created' });
        return user!;
      })
      .catch((err: unknown) => Promise.reject(conflictOr(err, input.email)));
    await this.#sendConsistencyToken(response);
    return served(row);
  }

  async #sendConsistencyToken(response: HeaderSetter): Promise<void> {
    const token = await this.db.consistencyToken();
    if (token !== undefined) response.setHeader(CONSISTENCY_HEADER, token);
  }
}

const userColumns = { id: users.id, name: users.name, email: users.email, createdAt: users.createdAt, updatedAt: users.updatedAt };
