import net from 'node:net';
import { clusterConfig, type ClusterNodeName } from './cluster.js';

interface Pair {
  client: net.Socket;
  server: net.Socket | undefined;
}

/**
 * A loopback TCP relay in front of a real server, so a test can take "the network" away without
 * stopping a node other tests use:
 * - `cut()` refuses new connections (ECONNREFUSED) and resets open ones;
 * - `reject()` accepts and closes at once (counted in `rejected`), like a server that is going down;
 * - `stall()` stops moving bytes on the open connections only (a silent half-dead peer), new ones pass;
 *   `releaseReplies()` then delivers what the server sent meanwhile, still holding what the client sent;
 * - `freeze()` stalls open connections and holds new ones without an answer (a black hole);
 * - `restore()` passes traffic again on the same port.
 * The first bytes each connection sends (the startup packet) are kept in `startupPackets`.
 * Nothing is stopped: the e2e tests and the chaos driver share this one relay.
 */
export class TcpRelay {
  readonly #pairs = new Set<Pair>();
  #server: net.Server | undefined;
  #mode: 'pass' | 'reject' | 'freeze' = 'pass';
  port = 0;
  accepted = 0;
  rejected = 0;
  readonly startupPackets: Buffer[] = [];

  constructor(
    readonly targetHost: string,
    readonly targetPort: number,
  ) {}

  /** A started relay in front of cluster node `node`. */
  static to(node: ClusterNodeName): Promise<TcpRelay> {
    return new TcpRelay(clusterConfig.host, clusterConfig.ports[node]).start();
  }

  /** Connections the relay currently holds open. */
  get connections(): number {
    return this.#pairs.size;
  }

  async start(): Promise<this> {
    await this.#listen(0);
    return this;
  }

  async cut(): Promise<void> {
    const server = this.#server;
    this.#server = undefined;
    this.#resetAll();
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  reject(): void {
    this.#mode = 'reject';
    this.#resetAll();
  }

  stall(): void {
    for (const pair of this.#pairs) {
      pair.client.unpipe();
      pair.server?.unpipe();
      pair.client.pause();
      pair.server?.pause();
    }
  }

  /** After `stall()`: lets the server's bytes (e.g. a FATAL it sent meanwhile) through again; the client's stay held. */
  releaseReplies(): void {
    for (const pair of this.#pairs) {
      pair.server?.pipe(pair.client);
      pair.server?.resume();
    }
  }

  freeze(): void {
    this.#mode = 'freeze';
    this.stall();
  }

  async restore(): Promise<void> {
    if (this.#mode === 'freeze') this.#resetAll();
    this.#mode = 'pass';
    if (!this.#server) await this.#listen(this.port);
  }

  async close(): Promise<void> {
    await this.cut();
  }

  #resetAll(): void {
    for (const pair of this.#pairs) {
      pair.client.resetAndDestroy();
      pair.server?.destroy();
    }
    this.#pairs.clear();
  }

  #listen(port: number): Promise<void> {
    const server = net.createServer((client) => this.#accept(client));
    this.#server = server;
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => {
        server.off('error', reject);
        this.port = (server.address() as net.AddressInfo).port;
        resolve();
      });
    });
  }

  #accept(client: net.Socket): void {
    this.accepted++;
    if (this.#mode === 'reject') {
      this.rejected++;
      client.on('error', () => undefined);
      client.resetAndDestroy();
      return;
    }
    const pair: Pair = { client, server: undefined };
    this.#pairs.add(pair);
    const drop = () => {
      this.#pairs.delete(pair);
      client.destroy();
      pair.server?.destroy();
    };
    client.on('error', drop);
    client.on('close', drop);
    if (this.#mode === 'freeze') {
      client.pause();
      return;
    }
    client.once('data', (chunk: Buffer) => this.startupPackets.push(Buffer.from(chunk)));
    const server = net.connect(this.targetPort, this.targetHost);
    pair.server = server;
    server.on('error', drop);
    server.on('close', drop);
    client.pipe(server);
    server.pipe(client);
  }
}

/** The key/value parameters of a PostgreSQL StartupMessage (protocol 3.0). */
export function startupParameters(packet: Buffer): Record<string, string> {
  const params: Record<string, string> = {};
  const length = packet.readInt32BE(0);
  const parts = packet.subarray(8, length).toString('utf8').split('\0');
  for (let i = 0; i + 1 < parts.length && parts[i] !== ''; i += 2) params[parts[i]!] = parts[i + 1]!;
  return params;
}
