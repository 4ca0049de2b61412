import { Body, ConflictException, Controller, Get, NotFoundException, Param, Post, Res } from '@nestjs/common';
import { DatabaseService, ReadOnly } from 'nestjs-pg-pools';
import { CONSISTENCY_HEADER } from '../users/users.controller.js';
import { parseCreateUser, parseId, type Served, type User } from '../users/users.dto.js';
import { InjectPrisma } from './prisma.module.js';
import type { PrismaClient } from './prisma/generated/client.js';

interface HeaderSetter {
  setHeader(name: string, value: string): unknown;
}

type ServerRow = { port: number; replica: boolean };

const SERVER = 'SELECT inet_server_port() AS port, pg_is_in_recovery() AS replica';

/**
 * /qb/prisma/users: the users endpoints written with the Prisma Client on `db.routedPool`. The GET is
 * @ReadOnly() (the model read and the server check each run on a replica); the POST is one
 * `prisma.$transaction` (one primary client) and answers with the consistency token, as /users does.
 */
@Controller('qb/prisma')
export class PrismaController {
  constructor(
    @InjectPrisma() private readonly prisma: PrismaClient,
    private readonly db: DatabaseService,
  ) {}

  @Get('users/:id')
  @ReadOnly()
  async find(@Param('id') id: string): Promise<Served<User>> {
    const userId = parseId(id);
    const user = await this.prisma.user.findUnique({ where: { id: userId } });
    const [server] = await this.prisma.$queryRawUnsafe<ServerRow[]>(SERVER);
    if (user === null) throw new NotFoundException(`Cannot find user ${userId} because no user has this id.`);
    return { data: user, servedBy: server! };
  }

  @Post('users')
  async create(@Body() body: unknown, @Res({ passthrough: true }) response: HeaderSetter): Promise<Served<User>> {
    const input = parseCreateUser(body);
    const { user, server } = await this.prisma
      .$transaction(async (tx) => {
        const created = await tx.user.create({ data: input });
        await tx.userEvent.create({ data: { userId: created.id, kind: 'created' } });
        const [row] = await tx.$queryRawUnsafe<ServerRow[]>(SERVER);
        return { user: created, server: row! };
      })
      .catch((err: unknown) => {
        const code = (err as { code?: string }).code;
        // P2002: Prisma's unique-constraint error (23505 from the server).
        throw code === 'P2002' ? new ConflictException(`Cannot save the user because the e-mail "${input.email}" is already taken. Please make sure that every user has a different e-mail.`) : err;
      });
    const token = await this.db.consistencyToken();
    if (token !== undefined) response.setHeader(CONSISTENCY_HEADER, token);
    return { data: user, servedBy: server };
  }
}
