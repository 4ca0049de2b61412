import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * Starts the project's own cluster (primary + 2 streaming replicas + PgBouncer) once per e2e run.
 * `scripts/cluster.sh start` is idempotent and returns only when both replicas stream and
 * PgBouncer answers. (Jest loads this file outside its module mapping, so it imports only Node.)
 */
export default function globalSetup(): void {
  const here = path.dirname(fileURLToPath(import.meta.url));
  const script = path.resolve(here, '..', '..', 'scripts', 'cluster.sh');
  const result = spawnSync('bash', [script, 'start'], { stdio: 'inherit' });
  if (result.status !== 0) {
    throw new Error(`Cannot run the e2e suite because "bash scripts/cluster.sh start" exited with ${result.status ?? result.signal}. See its output above.`);
  }
  // The Prisma Client e2e tests use clients generated from committed schemas (offline, kept while current).
  const prisma = spawnSync('bash', [path.resolve(here, '..', '..', 'scripts', 'prisma-generate.sh')], { stdio: 'inherit' });
  if (prisma.status !== 0) {
    throw new Error(`Cannot run the e2e suite because "bash scripts/prisma-generate.sh" exited with ${prisma.status ?? prisma.signal}. See its output above.`);
  }
}
