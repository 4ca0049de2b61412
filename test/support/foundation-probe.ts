import { Controller, Get, Injectable, Module } from '@nestjs/common';
import type { Pool } from 'pg';
import { DatabaseService, InjectDatabase, InjectPool } from 'nestjs-pg-pools';

export const WHO_ANSWERS =
  `SELECT inet_server_port() AS port, pg_is_in_recovery() AS "inRecovery", ` +
  `current_setting('application_name') AS "applicationName"`;

export interface Answer {
  port: number;
  inRecovery: boolean;
  applicationName: string;
}

async function answer(run: { query(text: string): Promise<{ rows: unknown[] }> }): Promise<Answer> {
  return (await run.query(WHO_ANSWERS)).rows[0] as Answer;
}

type Report = { service: Answer; primaryPool: Answer; replicaPools: Answer[] };

/** Reports which server answers each injected handle of the default database. */
@Injectable()
export class ProbeService {
  constructor(
    readonly db: DatabaseService,
    @InjectPool() readonly primaryPool: Pool,
    @InjectPool(undefined, 'replicas') readonly replicaPools: Pool[],
  ) {}

  async whoAnswers(): Promise<Report> {
    return {
      service: await answer(this.db),
      primaryPool: await answer(this.primaryPool),
      replicaPools: await Promise.all(this.replicaPools.map((pool) => answer(pool))),
    };
  }
}

@Controller('probe')
export class ProbeController {
  constructor(private readonly probe: ProbeService) {}

  @Get()
  whoAnswers() {
    return this.probe.whoAnswers();
  }
}

/** The same report for the `analytics` database. */
@Injectable()
export class AnalyticsProbeService extends ProbeService {
  constructor(
    @InjectDatabase('analytics') db: DatabaseService,
    @InjectPool('analytics', 'primary') primaryPool: Pool,
    @InjectPool('analytics', 'replicas') replicaPools: Pool[],
  ) {
    super(db, primaryPool, replicaPools);
  }
}

@Controller('analytics/probe')
export class AnalyticsProbeController extends ProbeController {
  constructor(probe: AnalyticsProbeService) {
    super(probe);
  }
}

/** A feature module that does not import PoolModule: it relies on the database being global. */
@Module({ controllers: [ProbeController], providers: [ProbeService] })
export class ProbeFeatureModule {}
