import { Controller, Get, Header } from '@nestjs/common';

/** A route that never touches the database: what the module costs such a route (nothing, by design). */
@Controller('ping')
export class PingController {
  @Get()
  @Header('Cache-Control', 'no-store')
  ping(): { ok: true } {
    return { ok: true };
  }
}
