import pg from 'pg';
import { clusterConfig } from './cluster.js';

/**
 * Takes every connection slot the app user may have on the primary (max_connections less the
 * superuser-reserved ones) from outside the library, the way another service would: plain
 * `pg.Client` sessions named `e2e-filler`. Always `free()` it in a finally.
 */
export class ServerFiller {
  readonly #clients: pg.Client[] = [];

  get size(): number {
    return this.#clients.length;
  }

  /** Opens app-user sessions until the server refuses one with 53300; resolves how many it holds. */
  async fill(): Promise<number> {
    for (let i = 0; i < clusterConfig.maxConnections; i++) {
      const c = new pg.Client({ ...clusterConfig.primary, application_name: 'e2e-filler', connectionTimeoutMillis: 5000 });
      try {
        await c.connect();
        this.#clients.push(c);
      } catch (err) {
        await c.end().catch(() => undefined);
        if ((err as { code?: string }).code === '53300') return this.#clients.length;
        throw err;
      }
    }
    throw new Error(`the primary never refused a connection after ${clusterConfig.maxConnections} sessions`);
  }

  async free(): Promise<void> {
    await Promise.all(this.#clients.splice(0).map((c) => c.end().catch(() => undefined)));
  }
}
