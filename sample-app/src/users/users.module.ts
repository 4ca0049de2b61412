import { Module } from '@nestjs/common';
import { UsersController } from './users.controller.js';
import { UsersSchema } from './users.schema.js';
import { UsersService } from './users.service.js';

@Module({
  controllers: [UsersController],
  providers: [UsersSchema, UsersService],
})
export class UsersModule {}
