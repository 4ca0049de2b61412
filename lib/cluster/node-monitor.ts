import type { NodePool } from '../pool/node-pool.js';
import type { PooledConnection } from '../pool/pooled-connection.js';

export interface MonitorSettings {
  readonly intervalMs: number;
  readonly timeoutMs: number;
}

/** What the monitor tells the database that owns the nodes. */
export interface MonitorListener {
  /** The node stopped answering (`reason` says how it was found). */
  hung(node: NodePool, reason: string): void;
  /** A node that was hung answers its probes again. */
  answering(node: NodePool): void;
}

const PROBE_SQL = 'SELECT 1';
const APPLICATION_SUFFIX = ':monitor';
/** A probe deadline timer firing later than this means the event loop was blocked: judged once more after it. */
const LOOP_LAG_TOLERANCE_MS = 100;

/**
 * One node's watch: a dedicated connection outside the pool that sends `SELECT 1` every
 * interval. A probe still unanswered after `timeoutMs` — and no other statement of the node
 * answered meanwhile — marks the node hung. The judgement waits for the I/O already received
 * (a `setImmediate` after the timer), so a busy event loop is not mistaken for a silent server.
 */
class NodeWatch {
  #conn: PooledConnection | undefined;
  #connecting = false;
  #closed = false;
  #sentAt = 0;
  hungReason: string | undefined;
  /** The node had a connection once: watching starts then (lazy pools open nothing at start). */
  #active = false;

  constructor(
    readonly node: NodePool,
    private readonly settings: MonitorSettings,
    private readonly listener: MonitorListener,
  ) {}

  tick(): void {
    const node = this.node;
    if (node.ended || this.#closed) return;
    if (!this.#active) {
      if (node.state().total === 0) return;
      this.#active = true;
    }
    if (this.#sentAt !== 0) return;
    if (this.#conn === undefined || this.#conn.broken) {
      // A banned node or one with an open breaker: its probe or trial finds out when it is back.
      if (!node.resting) this.#connect();
      return;
    }
    this.#probe(this.#conn);
  }

  #connect(): void {
    if (this.#connecting) return;
    this.#conn = undefined;
    this.#connecting = true;
    this.node.openDetached(APPLICATION_SUFFIX, this.node.config.connectTimeoutMs).then(
      (conn) => {
        this.#connecting = false;
        // Stopped while connecting (a failed start or a shutdown stops the monitor before the pools end).
        if (this.#closed || this.node.ended) {
          void conn.close(0);
          return;
        }
        this.#conn = conn;
        this.#probe(conn);
      },
      () => {
        // Only a probe on an open connection judges: opening one (authentication included) may
        // be slow on a loaded host, and a refused connect is a server that is down, which the
        // pool's own errors report (ban, breaker). A hung node stays hung until a probe answers.
        this.#connecting = false;
      },
    );
  }

  #probe(conn: PooledConnection): void {
    const sentAt = performance.now();
    this.#sentAt = sentAt;
    const timer = setTimeout(() => this.#judge(sentAt, 'on time'), this.settings.timeoutMs);
    timer.unref();
    conn.client.query(PROBE_SQL).then(
      () => {
        if (this.#sentAt !== sentAt) return;
        this.#sentAt = 0;
        if (this.hungReason !== undefined) {
          this.hungReason = undefined;
          this.listener.answering(this.node);
        }
      },
      () => {
        if (this.#sentAt !== sentAt) return;
        this.#sentAt = 0;
        void conn.close(0);
        if (this.#conn === conn) this.#conn = undefined;
      },
    );
  }

  /**
   * The probe's deadline passed. The verdict waits for the I/O already received (`setImmediate`
   * runs after the poll phase), and once more when the timer itself fired late (a blocked event
   * loop), so a busy process is not mistaken for a silent server.
   */
  #judge(sentAt: number, pass: 'on time' | 'after a late timer'): void {
    if (this.#sentAt !== sentAt) return;
    const late = performance.now() - (sentAt + this.settings.timeoutMs);
    if (late > LOOP_LAG_TOLERANCE_MS && pass === 'on time') {
      setTimeout(() => this.#judge(sentAt, 'after a late timer'), LOOP_LAG_TOLERANCE_MS).unref();
      return;
    }
    setImmediate(() => {
      if (this.#sentAt !== sentAt || this.node.ended) return;
      const now = performance.now();
      const conn = this.#conn;
      this.#conn = undefined;
      this.#sentAt = 0;
      conn?.destroy(new Error('monitor probe timed out'));
      if (now - this.node.lastAnswerAt < this.settings.timeoutMs) return;
      this.#hung(`no answer to the monitor's probe within ${this.settings.timeoutMs}ms`);
    });
  }

  #hung(reason: string): void {
    const first = this.hungReason === undefined;
    this.hungReason = reason;
    if (first) this.listener.hung(this.node, reason);
  }

  /** Outside evidence (a statement deadline expired): judged at once by a probe over a new connection. */
  suspect(): void {
    this.#active = true;
    if (this.#sentAt === 0 && this.#conn !== undefined && !this.#conn.broken) this.#probe(this.#conn);
  }

  close(): Promise<void> {
    this.#closed = true;
    const conn = this.#conn;
    this.#conn = undefined;
    this.#sentAt = 0;
    return conn === undefined ? Promise.resolve() : conn.close(1000);
  }
}

/**
 * Hung-node detection for one database (the AWS drivers' enhanced failure monitoring): every
 * node is watched over its own monitor connection on one `unref()`'d timer. A node found hung is
 * reported once; it is reported answering again when a probe succeeds.
 */
export class NodeMonitor {
  readonly #watches: NodeWatch[];
  #timer: NodeJS.Timeout | undefined;

  constructor(
    nodes: readonly NodePool[],
    private readonly settings: MonitorSettings,
    listener: MonitorListener,
  ) {
    this.#watches = nodes.map((node) => new NodeWatch(node, settings, listener));
  }

  start(): void {
    if (this.#timer !== undefined) return;
    this.#timer = setInterval(() => {
      for (const watch of this.#watches) watch.tick();
    }, this.settings.intervalMs);
    this.#timer.unref();
  }

  /** Why `node` is considered hung, or `undefined`. */
  hungReason(node: NodePool): string | undefined {
    return this.#watch(node)?.hungReason;
  }

  /** A statement of `node` missed its deadline: probe it now rather than at the next tick. */
  suspect(node: NodePool): void {
    this.#watch(node)?.suspect();
  }

  async stop(): Promise<void> {
    clearInterval(this.#timer);
    this.#timer = undefined;
    await Promise.all(this.#watches.map((w) => w.close()));
  }

  #watch(node: NodePool): NodeWatch | undefined {
    return this.#watches.find((w) => w.node === node);
  }
}
