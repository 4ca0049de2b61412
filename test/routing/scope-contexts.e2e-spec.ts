import { createServer } from 'node:net';
import { Controller, Injectable, Module, UseInterceptors, type INestApplication, type INestMicroservice } from '@nestjs/common';
import { ClientProxyFactory, MessagePattern, Payload, Transport, type ClientProxy } from '@nestjs/microservices';
import { WsAdapter } from '@nestjs/platform-ws';
import { Test } from '@nestjs/testing';
import { MessageBody, SubscribeMessage, WebSocketGateway } from '@nestjs/websockets';
import { firstValueFrom, timeout } from 'rxjs';
import WebSocket from 'ws';
import { DatabaseService, PoolModule, ReadOnly, RoutingInterceptor, Transactional } from 'nestjs-pg-pools';
import { expectNoSessionsLeft } from '../support/sessions.js';
import { routingOptions, useReplicatedTable, where, type Where } from '../support/routing.support.js';

// Contexts without HTTP middleware get their routing scope from RoutingInterceptor: a
// microservice message handler over a real TCP transport and a WebSocket gateway (platform-ws),
// both on the real primary + 2 replicas. What a scope gives, observably: @ReadOnly() reads on a
// replica, @Transactional() on one primary client, read-your-writes after a write in the same
// message, and consistencyToken() covering only this message's writes (no token when it wrote
// nothing; outside any scope the token is the primary's current position).

const APP = 'e2e-scope-contexts';
const TABLE = 'scope_contexts_e2e';
const REPLICAS = ['replica1', 'replica2'];
const onReplica = (w: Where) => REPLICAS.includes(w.node) && w.recovery === true;
const onPrimary = (w: Where) => w.node === 'primary' && w.recovery === false;

interface Outcome {
  token: string | null;
  sources: string[];
  reads: Where[];
  tx: number[];
}

@Injectable()
class Work {
  constructor(private readonly db: DatabaseService) {}

  @ReadOnly()
  async reads(id: number): Promise<{ sources: string[]; reads: Where[] }> {
    const { rows } = await this.db.query<{ source: string }>(`SELECT source FROM ${TABLE} WHERE id = $1 ORDER BY source`, [id]);
    const first = await where(this.db);
    await new Promise((resolve) => setTimeout(resolve, 2));
    return { sources: rows.map((r) => r.source), reads: [first, await where(this.db)] };
  }

  @Transactional()
  async twoStatements(): Promise<number[]> {
    return [(await where(this.db)).pid, (await where(this.db)).pid];
  }

  /** Writes `source` for `id` when given, then reads it back under @ReadOnly() and takes the token. */
  async run(id: number, source: string | undefined): Promise<Outcome> {
    if (source !== undefined) await this.db.query(`INSERT INTO ${TABLE} (id, source) VALUES ($1, $2)`, [id, source]);
    const token = (await this.db.consistencyToken()) ?? null;
    const { sources, reads } = await this.reads(id);
    return { token, sources, reads, tx: await this.twoStatements() };
  }
}

interface Message {
  id: number;
  source?: string;
}

@Controller()
@UseInterceptors(RoutingInterceptor)
class RpcController {
  constructor(private readonly work: Work) {}

  @MessagePattern('run')
  run(@Payload() message: Message): Promise<Outcome> {
    return this.work.run(message.id, message.source);
  }
}

@Controller()
class UnscopedRpcController {
  constructor(private readonly work: Work) {}

  @MessagePattern('run-unscoped')
  run(@Payload() message: Message): Promise<Outcome> {
    return this.work.run(message.id, message.source);
  }
}

@WebSocketGateway({ path: '/ws' })
@UseInterceptors(RoutingInterceptor)
class RunGateway {
  constructor(private readonly work: Work) {}

  @SubscribeMessage('run')
  async run(@MessageBody() message: Message): Promise<{ event: string; data: Outcome }> {
    return { event: 'ran', data: await this.work.run(message.id, message.source) };
  }
}

const options = routingOptions(APP, { routing: { consistency: 'read-your-writes' } });

@Module({ imports: [PoolModule.forRoot(options)], controllers: [RpcController, UnscopedRpcController], providers: [Work] })
class RpcModule {}

@Module({ imports: [PoolModule.forRoot(options)], providers: [Work, RunGateway] })
class GatewayModule {}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

function expectScoped(outcome: Outcome, wrote: string | undefined): void {
  if (wrote === undefined) {
    expect(outcome.token).toBeNull();
    expect(outcome.sources).toEqual([]);
    expect(outcome.reads.every(onReplica)).toBe(true);
  } else {
    expect(outcome.token).toMatch(/^[0-9A-F]+\/[0-9A-F]+$/);
    expect(outcome.sources).toEqual([wrote]);
  }
  expect(outcome.tx[0]).toBe(outcome.tx[1]);
}

useReplicatedTable(TABLE, 'id int, source text, PRIMARY KEY (id, source)');

describe('microservice message handlers over TCP with RoutingInterceptor', () => {
  let service: INestMicroservice;
  let client: ClientProxy;

  beforeAll(async () => {
    const port = await freePort();
    const moduleRef = await Test.createTestingModule({ imports: [RpcModule] }).compile();
    service = moduleRef.createNestMicroservice({ transport: Transport.TCP, options: { host: '127.0.0.1', port }, logger: false });
    await service.listen();
    client = ClientProxyFactory.create({ transport: Transport.TCP, options: { host: '127.0.0.1', port } });
    await client.connect();
  }, 20_000);

  afterAll(async () => {
    await client?.close();
    await service?.close();
    await expectNoSessionsLeft(APP);
  }, 20_000);

  const send = (pattern: string, message: Message) => firstValueFrom(client.send<Outcome, Message>(pattern, message).pipe(timeout(10_000)));

  it('gives each message its own scope: @ReadOnly() on a replica, read-your-writes, @Transactional() on one client', async () => {
    expectScoped(await send('run', { id: 1 }), undefined);
    const wrote = await send('run', { id: 2, source: 'rpc' });
    expectScoped(wrote, 'rpc');
  });

  it('keeps 20 concurrent messages apart: only the ones that wrote carry a token', async () => {
    const outcomes = await Promise.all(Array.from({ length: 20 }, (_, i) => send('run', i % 2 === 0 ? { id: 100 + i, source: `m${i}` } : { id: 100 + i })));
    outcomes.forEach((outcome, i) => expectScoped(outcome, i % 2 === 0 ? `m${i}` : undefined));
  });

  it('without the interceptor a handler has no scope: the token is the primary position even when it wrote nothing', async () => {
    const outcome = await send('run-unscoped', { id: 3 });
    expect(outcome.token).toMatch(/^[0-9A-F]+\/[0-9A-F]+$/);
    expect(outcome.reads.every(onReplica)).toBe(true);
    expect(onPrimary(outcome.reads[0]!)).toBe(false);
  });
});

describe('WebSocket gateway (platform-ws) with RoutingInterceptor', () => {
  let app: INestApplication;
  let url: string;

  beforeAll(async () => {
    const moduleRef = await Test.createTestingModule({ imports: [GatewayModule] }).compile();
    app = moduleRef.createNestApplication({ logger: false });
    app.useWebSocketAdapter(new WsAdapter(app));
    await app.listen(0, '127.0.0.1');
    url = `ws://127.0.0.1:${(app.getHttpServer().address() as { port: number }).port}/ws`;
  }, 20_000);

  afterAll(async () => {
    await app?.close();
    await expectNoSessionsLeft(APP);
  }, 20_000);

  /** Sends `messages` on one socket and collects one answer per message (10 s deadline). */
  async function exchange(messages: Message[]): Promise<Outcome[]> {
    const socket = new WebSocket(url);
    try {
      await new Promise<void>((resolve, reject) => {
        socket.once('open', () => resolve());
        socket.once('error', reject);
      });
      const answers: Outcome[] = [];
      const done = new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`Expected ${messages.length} answers within 10 s, got ${answers.length}.`)), 10_000);
        socket.on('message', (raw: Buffer) => {
          answers.push((JSON.parse(raw.toString()) as { data: Outcome }).data);
          if (answers.length === messages.length) {
            clearTimeout(timer);
            resolve();
          }
        });
      });
      for (const data of messages) socket.send(JSON.stringify({ event: 'run', data }));
      await done;
      return answers;
    } finally {
      socket.close();
    }
  }

  it('gives each event its own scope, several events in flight on one socket', async () => {
    const answers = await exchange([{ id: 500 }, { id: 501, source: 'ws' }]);
    const bySource = (s: string | undefined) => answers.find((a) => (s === undefined ? a.sources.length === 0 : a.sources.includes(s)))!;
    expectScoped(bySource(undefined), undefined);
    expectScoped(bySource('ws'), 'ws');
  });
});
