// The application module of a NestJS 11 app as the Nest CLI scaffolds it (CommonJS, Jest +
// ts-jest with the starter's default config), wired up like the README's quickstart.
// scripts/check-consumers.sh copies this app next to test/consumer/nest11-jest29 and
// nest11-jest30 (their package.json and lockfile), installs the packed nestjs-pg-pools and runs
// the app's own `jest`.
import { Injectable, Module } from '@nestjs/common';
import { DatabaseService, PoolModule } from 'nestjs-pg-pools';

const env = (key: string): string => {
  const value = process.env[key];
  if (!value) throw new Error(`Cannot start the Jest consumer app because ${key} is not set. Please make sure that scripts/check-consumers.sh runs it.`);
  return value;
};
const url = (port: string) =>
  `postgres://${env('PG_USER')}:${env('PG_PASSWORD')}@${env('PG_HOST')}:${env(port)}/${env('PG_DATABASE')}`;

@Injectable()
export class WhoAnswers {
  constructor(private readonly db: DatabaseService) {}

  async onReplica(): Promise<{ port: number; in_recovery: boolean }> {
    const { rows } = await this.db.replica.query<{ port: number; in_recovery: boolean }>(
      'SELECT inet_server_port() AS port, pg_is_in_recovery() AS in_recovery',
    );
    return rows[0];
  }

  async onPrimary(): Promise<{ port: number; in_recovery: boolean }> {
    const { rows } = await this.db.primary.query<{ port: number; in_recovery: boolean }>(
      'SELECT inet_server_port() AS port, pg_is_in_recovery() AS in_recovery',
    );
    return rows[0];
  }
}

@Module({
  imports: [
    PoolModule.forRoot({
      primary: { connectionString: url('PG_PRIMARY_PORT') },
      replicas: [{ connectionString: url('PG_REPLICA1_PORT') }],
      preset: 'test',
      applicationName: 'consumer-nest11-jest',
      sizingAdvisor: false,
    }),
  ],
  providers: [WhoAnswers],
})
export class AppModule {}
