import { Injectable, Logger, type OnModuleInit } from '@nestjs/common';
import { DatabaseService } from 'nestjs-pg-pools';

const MIGRATION_LOCK = 'nestjs-pg-pools-sample:users-schema';

/**
 * Creates the sample's tables at start, on the primary, idempotently. An advisory lock keeps two
 * instances starting at once from racing on `CREATE TABLE IF NOT EXISTS`.
 */
@Injectable()
export class UsersSchema implements OnModuleInit {
  readonly #logger = new Logger(UsersSchema.name);

  constructor(private readonly db: DatabaseService) {}

  async onModuleInit(): Promise<void> {
    await this.db.transaction(async (tx) => {
      await tx.query('SELECT pg_advisory_xact_lock(hashtext($1))', [MIGRATION_LOCK]);
      await tx.query(`
        CREATE TABLE IF NOT EXISTS users (
          id         integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
          name       text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
          email      text NOT NULL UNIQUE CHECK (length(email) BETWEEN 3 AND 320),
          created_at timestamptz NOT NULL DEFAULT now(),
          updated_at timestamptz NOT NULL DEFAULT now()
        )`);
      await tx.query(`
        CREATE TABLE IF NOT EXISTS user_events (
          id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
          user_id integer NOT NULL,
          kind    text NOT NULL CHECK (kind IN ('created', 'updated', 'deleted')),
          at      timestamptz NOT NULL DEFAULT now()
        )`);
      await tx.query('CREATE INDEX IF NOT EXISTS user_events_user_id_idx ON user_events (user_id)');
    });
    this.#logger.log('Tables users and user_events are ready.');
  }
}
