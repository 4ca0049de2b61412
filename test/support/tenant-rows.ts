import { adminQuery } from './cluster.js';
import { waitFor } from './wait.js';

// The row-level security table of the session-context tests: `table` (id, tenant, note), a policy
// that shows a session only the rows of `current_setting('app.tenant_id')`, a NOLOGIN `role` the
// app user may SET ROLE to, and `perTenant` seed rows for tenant-a and tenant-b, replayed on both
// replicas before it resolves. Created by the superuser, so RLS applies to `app` and `role`.

export async function createTenantRows(table: string, role: string, perTenant: number): Promise<void> {
  await adminQuery('primary', `DO $$BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '${role}') THEN CREATE ROLE ${role} NOLOGIN; END IF; END$$`);
  await adminQuery('primary', `GRANT ${role} TO app`);
  await adminQuery('primary', `DROP TABLE IF EXISTS ${table}`);
  await adminQuery('primary', `CREATE TABLE ${table} (id bigserial PRIMARY KEY, tenant text NOT NULL, note text)`);
  await adminQuery('primary', `ALTER TABLE ${table} ENABLE ROW LEVEL SECURITY`);
  await adminQuery(
    'primary',
    `CREATE POLICY tenant_rows ON ${table} USING (tenant = nullif(current_setting('app.tenant_id', true), '')) WITH CHECK (tenant = nullif(current_setting('app.tenant_id', true), ''))`,
  );
  await adminQuery('primary', `GRANT SELECT, INSERT ON ${table} TO ${role}, app`);
  await adminQuery('primary', `GRANT USAGE ON SEQUENCE ${table}_id_seq TO ${role}, app`);
  await adminQuery('primary', `INSERT INTO ${table} (tenant, note) SELECT t, 'seed ' || g FROM unnest(ARRAY['tenant-a', 'tenant-b']) t, generate_series(1, ${perTenant}) g`);
  const seeded = String(2 * perTenant);
  for (const replica of ['replica1', 'replica2'] as const) {
    await waitFor(`the seed rows on ${replica}`, async () => (await adminQuery<{ n: string }>(replica, `SELECT count(*) AS n FROM ${table}`).catch(() => [{ n: '0' }]))[0]!.n === seeded, 10_000);
  }
}
