// Query spans of @opentelemetry/instrumentation-pg still appear for the statements the packed
// library runs, and carry the node that served them (its port): a write on the primary and a
// read on the replica. scripts/check-consumers.sh runs it as `node --require otel-tracing.cjs`.
import 'reflect-metadata';
import { Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import type { InMemorySpanExporter } from '@opentelemetry/sdk-trace-base';
import { DatabaseService, PoolModule } from 'nestjs-pg-pools';

const env = (key: string): string => {
  const value = process.env[key];
  if (!value) throw new Error(`Cannot start the tracing consumer because ${key} is not set. Please make sure that scripts/check-consumers.sh runs it.`);
  return value;
};
const server = (port: string) => ({ host: env('PG_HOST'), port: Number(env(port)), user: env('PG_USER'), password: env('PG_PASSWORD'), database: env('PG_DATABASE') });

@Module({
  imports: [
    PoolModule.forRoot({
      primary: server('PG_PRIMARY_PORT'),
      replicas: [server('PG_REPLICA2_PORT')],
      preset: 'test',
      min: 1,
      applicationName: 'consumer-otel-spans',
      sizingAdvisor: false,
    }),
  ],
})
class TracedModule {}

async function main(): Promise<void> {
  setTimeout(() => {
    console.error('tracing consumer: no answer within 30 s');
    process.exit(1);
  }, 30_000).unref();
  const exporter = (globalThis as { otelSpans?: InMemorySpanExporter }).otelSpans;
  if (!exporter) throw new Error('Expected otel-tracing.cjs to be loaded with node --require.');

  const app = await NestFactory.createApplicationContext(TracedModule, { logger: ['error', 'warn'] });
  try {
    const db = app.get(DatabaseService);
    exporter.reset();
    await db.query("SELECT 'on the primary' AS traced_write");
    await db.replica.query("SELECT 'on the replica' AS traced_read");
    const port = (text: string): unknown => {
      const span = exporter.getFinishedSpans().find((s) => s.name.startsWith('pg.query') && String(s.attributes['db.statement'] ?? s.attributes['db.query.text']).includes(text));
      if (!span) throw new Error(`Expected a pg.query span for "${text}", got: ${exporter.getFinishedSpans().map((s) => s.name).join(', ') || 'no spans'}.`);
      return span.attributes['net.peer.port'] ?? span.attributes['server.port'];
    };
    const served = { write: port('traced_write'), read: port('traced_read') };
    const expected = { write: Number(env('PG_PRIMARY_PORT')), read: Number(env('PG_REPLICA2_PORT')) };
    if (served.write !== expected.write || served.read !== expected.read) {
      throw new Error(`Expected the spans to carry the serving node's port ${JSON.stringify(expected)}, got ${JSON.stringify(served)}.`);
    }
    console.log(`tracing consumer: instrumentation-pg spans for the library's queries, write on port ${served.write} (primary), read on port ${served.read} (replica)`);
  } finally {
    await app.close();
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
