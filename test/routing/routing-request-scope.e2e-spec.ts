import { Readable } from 'node:stream';
import { Body, Controller, Get, HttpCode, Injectable, Module, Param, ParseIntPipe, Post, SetMetadata, StreamableFile, UseGuards, UseInterceptors, type CallHandler, type CanActivate, type ExecutionContext, type INestApplication, type NestInterceptor } from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import { tap, type Observable } from 'rxjs';
import request from 'supertest';
import { DatabaseService, PoolModule, ReadOnly, Transactional } from 'nestjs-pg-pools';
import { adminQuery } from '../support/cluster.js';
import { expectNoSessionsLeft } from '../support/sessions.js';
import { adapters, createHttpApp, routingOptions, useReplicatedTable, where, type Where } from '../support/routing.support.js';

// The HTTP request scope (an Express middleware / a Fastify onRequest hook, no global
// interceptor) on the real primary + 2 replicas: it is open before guards and pipes run, it
// survives body parsing, streams and StreamableFile responses, it reads the consistency header
// only when a statement needs it, and @ReadOnly() / @Transactional() on handlers keep every other
// Nest decorator working (guards, pipes, interceptors, @HttpCode, Swagger-style metadata).

const APP = 'e2e-request-scope';
const TABLE = 'request_scope_e2e';
const REPLICAS = ['replica1', 'replica2'];
const API_OPERATION = 'swagger/apiOperation';
const API_RESPONSES = 'swagger/apiResponse';

const onReplica = (w: Where) => REPLICAS.includes(w.node) && w.recovery === true;
const onPrimary = (w: Where) => w.node === 'primary' && w.recovery === false;

/** Writes a row before the handler runs: the write belongs to the request's session. */
@Injectable()
class WritingGuard implements CanActivate {
  constructor(private readonly db: DatabaseService) {}

  async canActivate(context: ExecutionContext): Promise<boolean> {
    const id = Number(context.switchToHttp().getRequest<{ params: { id: string } }>().params.id);
    await this.db.query(`INSERT INTO ${TABLE} (id, source) VALUES ($1, 'guard')`, [id]);
    return true;
  }
}

@Injectable()
class HeaderGuard implements CanActivate {
  canActivate(context: ExecutionContext): boolean {
    return context.switchToHttp().getRequest<{ headers: Record<string, string> }>().headers['x-allow'] === 'yes';
  }
}

@Injectable()
class TagInterceptor implements NestInterceptor {
  intercept(context: ExecutionContext, next: CallHandler): Observable<unknown> {
    const response = context.switchToHttp().getResponse<{ header(name: string, value: string): unknown }>();
    return next.handle().pipe(tap(() => response.header('x-tagged', 'yes')));
  }
}

@Injectable()
class Reads {
  constructor(readonly db: DatabaseService) {}

  @ReadOnly()
  async sources(id: number): Promise<{ where: Where; sources: string[] }> {
    const { rows } = await this.db.query<{ source: string }>(`SELECT source FROM ${TABLE} WHERE id = $1 ORDER BY source`, [id]);
    return { where: await where(this.db), sources: rows.map((r) => r.source) };
  }
}

@Controller('rs')
class RequestScopeController {
  constructor(
    private readonly db: DatabaseService,
    private readonly reads: Reads,
  ) {}

  @Get('ping')
  ping(): string {
    return 'pong';
  }

  @Post('guarded/:id')
  @UseGuards(WritingGuard)
  async guarded(@Param('id', ParseIntPipe) id: number): Promise<{ token: string | undefined; read: { where: Where; sources: string[] } }> {
    const token = await this.db.consistencyToken();
    return { token, read: await this.reads.sources(id) };
  }

  @Get('meta/:id')
  @HttpCode(203)
  @UseGuards(HeaderGuard)
  @ReadOnly()
  @UseInterceptors(TagInterceptor)
  @SetMetadata(API_OPERATION, { summary: 'One row, from a replica' })
  @SetMetadata(API_RESPONSES, { 203: { description: 'served' } })
  async meta(@Param('id', ParseIntPipe) id: number): Promise<{ id: number; where: Where }> {
    return { id, where: await where(this.db) };
  }

  @Post('body')
  @Transactional()
  async body(@Body() body: { id: number; rows: number }): Promise<{ pids: number[] }> {
    const pids: number[] = [];
    for (let i = 0; i < body.rows; i++) {
      await this.db.query(`INSERT INTO ${TABLE} (id, source) VALUES ($1, $2)`, [body.id, `body-${i}`]);
      pids.push((await where(this.db)).pid);
    }
    return { pids };
  }

  @Post('body-then-read')
  async bodyThenRead(@Body() body: { id: number }): Promise<{ token: string | undefined; read: { where: Where; sources: string[] } }> {
    await this.db.query(`INSERT INTO ${TABLE} (id, source) VALUES ($1, 'body')`, [body.id]);
    return { token: await this.db.consistencyToken(), read: await this.reads.sources(body.id) };
  }

  @Post('stream/:id')
  async stream(@Param('id', ParseIntPipe) id: number): Promise<StreamableFile> {
    await this.db.query(`INSERT INTO ${TABLE} (id, source) VALUES ($1, 'stream')`, [id]);
    const db = this.db;
    async function* lines(): AsyncGenerator<string> {
      for (let i = 0; i < 3; i++) {
        await new Promise((resolve) => setTimeout(resolve, 2));
        const token = await db.consistencyToken();
        yield `${JSON.stringify({ line: i, token: token ?? null, where: await where(db) })}\n`;
      }
    }
    return new StreamableFile(Readable.from(lines()), { type: 'application/x-ndjson' });
  }

  @Get('file')
  @ReadOnly()
  async file(): Promise<StreamableFile> {
    const served = await where(this.db);
    return new StreamableFile(Buffer.from(JSON.stringify(served)), { type: 'application/json' });
  }
}

@Module({
  imports: [PoolModule.forRoot(routingOptions(APP, { routing: { consistency: 'read-your-writes' } }))],
  controllers: [RequestScopeController],
  providers: [Reads, WritingGuard, HeaderGuard, TagInterceptor],
})
class RequestScopeModule {}

useReplicatedTable(TABLE, 'id int, source text, PRIMARY KEY (id, source)');

describe.each(adapters)('HTTP request scope on %s', (adapter) => {
  let app: INestApplication;
  const base = adapter === 'express' ? 1000 : 2000;

  beforeAll(async () => {
    app = await createHttpApp(RequestScopeModule, adapter);
  }, 20_000);

  afterAll(async () => {
    await app?.close();
    await expectNoSessionsLeft(APP);
  }, 20_000);

  const http = () => request(app.getHttpServer());

  it('is open before guards run: a write in a guard counts for the handler (consistency token, read-your-writes)', async () => {
    const body = (await http().post(`/rs/guarded/${base + 1}`).expect(201)).body as { token: string | null; read: { where: Where; sources: string[] } };
    expect(body.token).toMatch(/^[0-9A-F]+\/[0-9A-F]+$/);
    // Read-your-writes: the @ReadOnly() read after the guard's write sees the row, wherever it ran.
    expect(body.read.sources).toEqual(['guard']);
  });

  it('keeps guards, pipes, interceptors, @HttpCode and Swagger-style metadata of a @ReadOnly() handler', async () => {
    await http().get('/rs/meta/7').expect(403);
    const res = await http().get('/rs/meta/7').set('x-allow', 'yes').expect(203);
    expect(res.headers['x-tagged']).toBe('yes');
    expect(res.body.id).toBe(7);
    expect(onReplica(res.body.where)).toBe(true);
    const reflector = app.get(Reflector);
    const handler = RequestScopeController.prototype.meta;
    expect(reflector.get(API_OPERATION, handler)).toEqual({ summary: 'One row, from a replica' });
    expect(reflector.get(API_RESPONSES, handler)).toEqual({ 203: { description: 'served' } });
    expect(handler.name).toBe('meta');
  });

  it('survives body parsing: a @Transactional() handler with a JSON body on one primary client, read-your-writes after a posted write', async () => {
    const id = base + 2;
    const body = (await http().post('/rs/body').send({ id, rows: 3 }).expect(201)).body as { pids: number[] };
    expect(body.pids).toHaveLength(3);
    expect(new Set(body.pids).size).toBe(1);
    expect(await adminQuery<{ n: number }>('primary', `SELECT count(*)::int AS n FROM ${TABLE} WHERE id = $1`, [id])).toEqual([{ n: 3 }]);
    const read = (await http().post('/rs/body-then-read').send({ id: base + 4 }).expect(201)).body as { token: string | null; read: { sources: string[] } };
    expect(read.token).toMatch(/^[0-9A-F]+\/[0-9A-F]+$/);
    expect(read.read.sources).toEqual(['body']);
  });

  it('keeps the scope while a streamed response is produced, and for a StreamableFile from a @ReadOnly() handler', async () => {
    const res = await http().post(`/rs/stream/${base + 3}`).buffer(true).parse((r, done) => {
      let text = '';
      r.on('data', (chunk: Buffer) => (text += chunk.toString()));
      r.on('end', () => done(null, text));
    }).expect(201);
    const lines = (res.body as string).trim().split('\n').map((l) => JSON.parse(l) as { token: string | null; where: Where });
    expect(lines).toHaveLength(3);
    for (const line of lines) {
      expect(line.token).toMatch(/^[0-9A-F]+\/[0-9A-F]+$/);
      expect(onPrimary(line.where)).toBe(true);
    }
    const file = await http().get('/rs/file').buffer(true).parse((r, done) => {
      let text = '';
      r.on('data', (chunk: Buffer) => (text += chunk.toString()));
      r.on('end', () => done(null, text));
    }).expect(200);
    expect(onReplica(JSON.parse(file.body as string) as Where)).toBe(true);
  });

  it('reads the consistency header only when a statement needs it: a route without the database ignores a malformed one', async () => {
    expect((await http().get('/rs/ping').set('x-pg-consistency-token', 'not-a-token').expect(200)).text).toBe('pong');
    const res = await http().get('/rs/meta/1').set('x-allow', 'yes').set('x-pg-consistency-token', 'not-a-token').expect(400);
    expect(res.body.message).toContain('Cannot read the x-pg-consistency-token header because it is not a consistency token');
  });

  it('keeps concurrent requests apart: each request sees only its own writes in its token', async () => {
    const results = await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        i % 2 === 0
          ? http().post(`/rs/guarded/${base + 100 + i}`).expect(201).then((r) => (r.body as { token: string | null }).token !== null)
          : http().get('/rs/meta/1').set('x-allow', 'yes').expect(203).then((r) => onReplica((r.body as { where: Where }).where)),
      ),
    );
    expect(results.every(Boolean)).toBe(true);
  });
});
