import { Body, Controller, Delete, Get, Param, Patch, Post, Query, Res } from '@nestjs/common';
import { DatabaseService, ReadOnly } from 'nestjs-pg-pools';
import { parseCreateUser, parseId, parsePage, parseUpdateUser, type Served, type User } from './users.dto.js';
import { UsersService } from './users.service.js';

/** The library's default `routing.consistencyHeader`. */
export const CONSISTENCY_HEADER = 'x-pg-consistency-token';

interface HeaderSetter {
  setHeader(name: string, value: string): unknown;
}

/**
 * CRUD on users. GETs are `@ReadOnly()`: they run on a replica (the primary when none is usable or
 * none has replayed the caller's consistency token). Writes run on the primary and answer with a
 * consistency token header; send it back on the next request to read your own writes.
 */
@Controller('users')
export class UsersController {
  constructor(
    private readonly users: UsersService,
    private readonly db: DatabaseService,
  ) {}

  @Get()
  @ReadOnly()
  list(@Query('limit') limit?: string, @Query('offset') offset?: string): Promise<Served<User[]>> {
    return this.users.list(parsePage(limit, offset));
  }

  @Get(':id')
  @ReadOnly()
  find(@Param('id') id: string): Promise<Served<User>> {
    return this.users.find(parseId(id));
  }

  @Post()
  async create(@Body() body: unknown, @Res({ passthrough: true }) response: HeaderSetter): Promise<Served<User>> {
    const created = await this.users.create(parseCreateUser(body));
    await this.#sendConsistencyToken(response);
    return created;
  }

  @Patch(':id')
  async update(@Param('id') id: string, @Body() body: unknown, @Res({ passthrough: true }) response: HeaderSetter): Promise<Served<User>> {
    const updated = await this.users.update(parseId(id), parseUpdateUser(body));
    await this.#sendConsistencyToken(response);
    return updated;
  }

  @Delete(':id')
  async remove(@Param('id') id: string, @Res({ passthrough: true }) response: HeaderSetter): Promise<Served<User>> {
    const removed = await this.users.remove(parseId(id));
    await this.#sendConsistencyToken(response);
    return removed;
  }

  async #sendConsistencyToken(response: HeaderSetter): Promise<void> {
    const token = await this.db.consistencyToken();
    if (token !== undefined) response.setHeader(CONSISTENCY_HEADER, token);
  }
}
