import { ConflictException, Injectable, NotFoundException } from '@nestjs/common';
import { DatabaseService, Transactional } from 'nestjs-pg-pools';
import type { CreateUserInput, Page, Served, UpdateUserInput, User } from './users.dto.js';

/** Every statement also returns which server ran it, so responses can say who answered. */
const SERVED_BY = 'inet_server_port() AS "servedByPort", pg_is_in_recovery() AS "servedByReplica"';
const USER_COLUMNS = 'u.id, u.name, u.email, u.created_at AS "createdAt", u.updated_at AS "updatedAt"';

interface UserRow {
  servedByPort: number;
  servedByReplica: boolean;
  id: number | null;
  name: string;
  email: string;
  createdAt: Date;
  updatedAt: Date;
}

type EventKind = 'created' | 'updated' | 'deleted';

function servedBy(row: UserRow): Served<unknown>['servedBy'] {
  return { port: row.servedByPort, replica: row.servedByReplica };
}

function userOf(row: UserRow): User {
  return { id: row.id!, name: row.name, email: row.email, createdAt: row.createdAt, updatedAt: row.updatedAt };
}

function notFound(id: number): NotFoundException {
  return new NotFoundException(`Cannot find user ${id} because no user has this id.`);
}

function conflictOr(err: unknown, email: string | undefined): unknown {
  if ((err as { code?: string }).code === '23505' && email !== undefined) {
    return new ConflictException(
      `Cannot save the user because the e-mail "${email}" is already taken. Please make sure that every user has a different e-mail.`,
    );
  }
  return err;
}

/**
 * Users and their change log. Reads run wherever the caller's scope says (a replica under
 * `@ReadOnly()`); each write changes a user and logs the change in one transaction.
 */
@Injectable()
export class UsersService {
  constructor(private readonly db: DatabaseService) {}

  async list(page: Page): Promise<Served<User[]>> {
    const { rows } = await this.db.query<UserRow>(
      `SELECT ${SERVED_BY}, ${USER_COLUMNS}
         FROM (SELECT 1) AS here
         LEFT JOIN LATERAL (SELECT * FROM users ORDER BY id LIMIT $1 OFFSET $2) AS u ON true
        ORDER BY u.id`,
      [page.limit, page.offset],
    );
    return { data: rows.filter((row) => row.id !== null).map(userOf), servedBy: servedBy(rows[0]!) };
  }

  async find(id: number): Promise<Served<User>> {
    const { rows } = await this.db.query<UserRow>(
      `SELECT ${SERVED_BY}, ${USER_COLUMNS} FROM (SELECT 1) AS here LEFT JOIN users AS u ON u.id = $1`,
      [id],
    );
    const row = rows[0]!;
    if (row.id === null) throw notFound(id);
    return { data: userOf(row), servedBy: servedBy(row) };
  }

  @Transactional()
  async create(input: CreateUserInput): Promise<Served<User>> {
    const row = await this.db
      .query<UserRow>(`INSERT INTO users AS u (name, email) VALUES ($1, $2) RETURNING ${SERVED_BY}, ${USER_COLUMNS}`, [input.name, input.email])
      .then((res) => res.rows[0]!, (err: unknown) => Promise.reject(conflictOr(err, input.email)));
    await this.#log(row.id!, 'created');
    return { data: userOf(row), servedBy: servedBy(row) };
  }

  @Transactional()
  async update(id: number, patch: UpdateUserInput): Promise<Served<User>> {
    const { rows } = await this.db
      .query<UserRow>(
        `UPDATE users AS u SET name = COALESCE($2, u.name), email = COALESCE($3, u.email), updated_at = now()
          WHERE u.id = $1 RETURNING ${SERVED_BY}, ${USER_COLUMNS}`,
        [id, patch.name ?? null, patch.email ?? null],
      )
      .catch((err: unknown) => Promise.reject(conflictOr(err, patch.email)));
    if (rows.length === 0) throw notFound(id);
    await this.#log(id, 'updated');
    return { data: userOf(rows[0]!), servedBy: servedBy(rows[0]!) };
  }

  @Transactional()
  async remove(id: number): Promise<Served<User>> {
    const { rows } = await this.db.query<UserRow>(`DELETE FROM users AS u WHERE u.id = $1 RETURNING ${SERVED_BY}, ${USER_COLUMNS}`, [id]);
    if (rows.length === 0) throw notFound(id);
    await this.#log(id, 'deleted');
    return { data: userOf(rows[0]!), servedBy: servedBy(rows[0]!) };
  }

  async #log(userId: number, kind: EventKind): Promise<void> {
    await this.db.query('INSERT INTO user_events (user_id, kind) VALUES ($1, $2)', [userId, kind]);
  }
}
