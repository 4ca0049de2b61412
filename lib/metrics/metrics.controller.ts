import { createHash } from 'node:crypto';
import { Controller, Get, Header, Inject, NotFoundException, Req, Res, UseGuards, VERSION_NEUTRAL, type Type } from '@nestjs/common';
import { renderDashboardPage } from './dashboard.page.js';
import { DASHBOARD_DISABLED_MESSAGE } from './metrics.constants.js';
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

function guarded<T extends Type>(controller: T, config: ResolvedMetricsOptions): T {
  if (config.guards.length > 0) UseGuards(...config.guards)(controller);
  return controller;
}

/**
 * Builds the controllers of the enabled endpoints with the configured paths (decorators applied
 * at `forRoot` time) and the configured guards. Version-neutral, so URI versioning leaves them alone.
 */
export function createMetricsControllers(config: ResolvedMetricsOptions): Type[] {
  if (!config.enabled) return [];
  const controllers: Type[] = [];

  if (config.prometheusPath !== false) {
    @Controller({ path: config.prometheusPath, version: VERSION_NEUTRAL })
    class PoolPrometheusController {
      constructor(@Inject(PoolMetricsService) private readonly metrics: PoolMetricsService) {}

      @Get()
      @Header('Cache-Control', 'no-store')
      async scrape(@Res({ passthrough: true }) response: HeaderSetter): Promise<string> {
        const { contentType, body } = await this.metrics.prometheusText();
        response.header('Content-Type', contentType);
        return body;
      }
    }
    controllers.push(guarded(PoolPrometheusController, config));
  }

  @Controller({ path: config.jsonPath, version: VERSION_NEUTRAL })
  class PoolMetricsJsonController {
    constructor(@Inject(PoolMetricsService) private readonly metrics: PoolMetricsService) {}

    @Get()
    @Header('Cache-Control', 'no-store')
    snapshot(): PoolMetricsSnapshot {
      return this.metrics.snapshot();
    }
  }
  controllers.push(guarded(PoolMetricsJsonController, config));

  if (config.dashboard !== false) {
    @Controller({ path: config.dashboardPath, version: VERSION_NEUTRAL })
    class PoolDashboardController {
      constructor(@Inject(PoolMetricsService) private readonly metrics: PoolMetricsService) {}

      @Get()
      @Header('Cache-Control', 'no-store')
      @Header('X-Content-Type-Options', 'nosniff')
      page(@Req() request: RequestLike, @Res({ passthrough: true }) response: HeaderSetter): string {
        if (!this.metrics.dashboardEnabled()) throw new NotFoundException(DASHBOARD_DISABLED_MESSAGE);
        const html = renderDashboardPage({ jsonUrl: jsonUrlFor(request, config) });
        response.header('Content-Type', 'text/html; charset=utf-8');
        response.header('Content-Security-Policy', dashboardSecurityPolicy(html));
        return html;
      }
    }
    controllers.push(guarded(PoolDashboardController, config));
  }
  return controllers;
}
