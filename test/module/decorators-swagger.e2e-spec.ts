import { Controller, Get, HttpCode, Injectable, Module, Param, ParseIntPipe, Post, UseGuards, type CanActivate, type INestApplication } from '@nestjs/common';
import { ApiOperation, ApiParam, ApiResponse, ApiTags, DocumentBuilder, SwaggerModule } from '@nestjs/swagger';
import request from 'supertest';
import { DatabaseService, PoolModule, ReadOnly, Transactional } from 'nestjs-pg-pools';
import { createHttpApp, routingOptions, where, type Where } from '../support/routing.support.js';
import { expectNoSessionsLeft } from '../support/sessions.js';

// @ReadOnly() and @Transactional() on controller handlers next to real @nestjs/swagger
// decorators (above and below them): the OpenAPI document Nest builds still has every
// operation, summary, parameter and response, and the routes answer from the right server.

const APP = 'e2e-decorators-swagger';

@Injectable()
class AllowGuard implements CanActivate {
  canActivate(): boolean {
    return true;
  }
}

@ApiTags('reads')
@Controller('documented')
class DocumentedController {
  constructor(private readonly db: DatabaseService) {}

  @ApiOperation({ summary: 'Where a read-only handler ran' })
  @ApiResponse({ status: 203, description: 'served by a replica' })
  @Get(':id')
  @HttpCode(203)
  @ReadOnly()
  @UseGuards(AllowGuard)
  @ApiParam({ name: 'id', type: Number, description: 'any integer' })
  async read(@Param('id', ParseIntPipe) id: number): Promise<{ id: number; where: Where }> {
    return { id, where: await where(this.db) };
  }

  @Post()
  @Transactional()
  @ApiOperation({ summary: 'Two statements on one primary client' })
  @ApiResponse({ status: 201, description: 'both pids' })
  async write(): Promise<number[]> {
    return [(await where(this.db)).pid, (await where(this.db)).pid];
  }
}

@Module({ imports: [PoolModule.forRoot(routingOptions(APP))], controllers: [DocumentedController], providers: [AllowGuard] })
class DocumentedModule {}

describe('@ReadOnly() / @Transactional() next to @nestjs/swagger decorators', () => {
  let app: INestApplication;

  beforeAll(async () => {
    app = await createHttpApp(DocumentedModule, 'express');
  }, 20_000);

  afterAll(async () => {
    await app?.close();
    await expectNoSessionsLeft(APP);
  }, 20_000);

  it('keeps every operation, summary, parameter and response in the OpenAPI document', () => {
    const document = SwaggerModule.createDocument(app, new DocumentBuilder().setTitle('e2e').build());
    const read = document.paths['/documented/{id}']?.get;
    expect(read?.summary).toBe('Where a read-only handler ran');
    expect(read?.tags).toEqual(['reads']);
    expect(read?.parameters).toEqual([expect.objectContaining({ name: 'id', in: 'path', required: true, description: 'any integer', schema: { type: 'number' } })]);
    expect(Object.keys(read?.responses ?? {})).toEqual(['203']);
    const write = document.paths['/documented']?.post;
    expect(write?.summary).toBe('Two statements on one primary client');
    expect(write?.responses?.['201']).toMatchObject({ description: 'both pids' });
  });

  it('still routes: the read on a replica with its status code, the transaction on one primary client', async () => {
    const read = await request(app.getHttpServer()).get('/documented/5').expect(203);
    expect(read.body.id).toBe(5);
    expect(read.body.where.recovery).toBe(true);
    const write = (await request(app.getHttpServer()).post('/documented').expect(201)).body as number[];
    expect(write[0]).toBe(write[1]);
  });
});
