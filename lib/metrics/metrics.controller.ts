import { createHash } from 'node:crypto';
import { Controller, Get, Header, Inject, NotFoundException, Req, Res, UseGuards, VERSION_NEUTRAL, type Type } from '@nestjs/common';
import { renderDashboardPage } from './dashboard.page.js';
import { DASHBOARD_DISABLED_MESSAGE } from './metrics.constants.js';
import { PoolMetricsGuard } from './metrics.guard.js';
import type { ResolvedMetricsOptions } from './metrics.options.js';
import { PoolMetricsService } from './metrics.service.js';
import type { PoolMetricsSnapshot } from './metrics.snapshot.js';

interface HeaderSetter {
  header(name: string, value: string): unknown;
}

interface RequestLike {
  originalUrl?: string;
  url?: string;
}

function sha256(text: string): string {
  return `'sha256-${createHash('sha256').update(text).digest('base64')}'`;
}

/** The JSON endpoint's URL as seen by the browser, keeping a global prefix in front of the dashboard path. */
export function jsonUrlFor(request: RequestLike, config: ResolvedMetricsOptions): string {
  const path = (request.originalUrl ?? request.url ?? '').split('?')[0]!.replace(/\/+$/, '');
  const suffix = `/${config.dashboardPath}`;
  const prefix = path.endsWith(suffix) ? path.slice(0, -suffix.length) : '';
  return `${prefix}/${config.jsonPath}`;
}

/** A strict CSP for the page: only its own inline script and style (by hash), fetches to itself. */
export function dashboardSecurityPolicy(html: string): string {
  const script = /<script>([\s\S]*?)<\/script>/.exec(html)?.[1] ?? '';
  const style = /<style>([\s\S]*?)<\/style>/.exec(html)?.[1] ?? '';
  return [
    "default-src 'none'",
    `script-src ${sha256(script)}`,
    `style-src ${sha256(style)}`,
    "connect-src 'self'",
    "img-src 'self' data:",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'self'",
  ].join('; ');
}

/** The routing of one endpoint class: its paths (none when the endpoint is off), version-neutral. */
function route(controller: Type, path: string | false): void {
  Controller({ path: path === false ? [] : [path], version: VERSION_NEUTRAL })(controller);
}

@Controller({ path: [], version: VERSION_NEUTRAL })
@UseGuards(PoolMetricsGuard)
export class PoolPrometheusController {
  constructor(@Inject(PoolMetricsService) private readonly metrics: PoolMetricsService) {}

  @Get()
  @Header('Cache-Control', 'no-store')
  async scrape(@Res({ passthrough: true }) response: HeaderSetter): Promise<string> {
    const { contentType, body } = await this.metrics.prometheusText();
    response.header('Content-Type', contentType);
    return body;
  }
}

@Controller({ path: [], version: VERSION_NEUTRAL })
@UseGuards(PoolMetricsGuard)
export class PoolMetricsJsonController {
  constructor(@Inject(PoolMetricsService) private readonly metrics: PoolMetricsService) {}

  @Get()
  @Header('Cache-Control', 'no-store')
  snapshot(): PoolMetricsSnapshot {
    return this.metrics.snapshot();
  }
}

@Controller({ path: [], version: VERSION_NEUTRAL })
@UseGuards(PoolMetricsGuard)
export class PoolDashboardController {
  constructor(@Inject(PoolMetricsService) private readonly metrics: PoolMetricsService) {}

  @Get()
  @Header('Cache-Control', 'no-store')
  @Header('X-Content-Type-Options', 'nosniff')
  page(@Req() request: RequestLike, @Res({ passthrough: true }) response: HeaderSetter): string {
    if (!this.metrics.dashboardEnabled()) throw new NotFoundException(DASHBOARD_DISABLED_MESSAGE);
    const html = renderDashboardPage({ jsonUrl: jsonUrlFor(request, this.metrics.config) });
    response.header('Content-Type', 'text/html; charset=utf-8');
    response.header('Content-Security-Policy', dashboardSecurityPolicy(html));
    return html;
  }
}

/** The metrics endpoint controllers, registered once by the root module. */
export const METRICS_CONTROLLERS: Type[] = [PoolPrometheusController, PoolMetricsJsonController, PoolDashboardController];

/**
 * Gives the endpoint controllers the paths of the application about to register its routes (the
 * root module calls it from `configure()`, which Nest runs just before it maps the routes): an
 * endpoint that is off gets no path, so no route.
 */
export function routeMetricsControllers(config: ResolvedMetricsOptions): void {
  route(PoolPrometheusController, config.enabled ? config.prometheusPath : false);
  route(PoolMetricsJsonController, config.enabled ? config.jsonPath : false);
  route(PoolDashboardController, config.enabled && config.dashboard !== false ? config.dashboardPath : false);
}
