import type { NodePool } from '../pool/node-pool.js';
import { isConnectionError, isSessionTerminated, neverSent, sqlState } from '../errors/sql-state.js';
import { classifyFailure, FailureClass } from '../errors/failure-class.js';
import type { PoolEvent } from '../pool.events.js';
import { isRoleChange } from './role-change.js';
import type { Topology } from './topology.js';

/**
 * Which failures of a held write prove it did not run, so it may run again on the new primary:
 * `unsent` every failure (an acquire, a BEGIN); `refused` a refusal (57P03, 25006, a failed
 * connect, an open breaker); `terminated` also a single statement the server terminated with
 * 57P01 (a fast shutdown: its transaction was rolled back, the error says so).
 */
export type Rerun = 'unsent' | 'refused' | 'terminated';

/** Pause between two attempts of one held write, so a node that keeps refusing is not hammered. */
const RETRY_PAUSE_MS = 20;

export interface WriteHoldHost {
  readonly name: string;
  readonly topology: Topology;
  readonly emitting: boolean;
  emit(event: PoolEvent): void;
  debug(message: string): void;
  /** Why the node monitor considers `node` hung (it stopped answering), or `undefined`. */
  hungReason(node: NodePool): string | undefined;
}

/**
 * Holds writes through a role change (`failover.holdWritesMs`). While the primary is changing (no
 * node answers as the primary, or a role check runs because the write node lost its connection,
 * answered 57P03 or 25006), a write that has not been sent waits for the new primary, up to the
 * bound counted from when the caller asked. A write that failed without running (refused at
 * connect, 57P03, 25006, an open breaker) waits for the role check it triggered and runs again on
 * the node that answers as the primary; one whose outcome is unknown (a connection lost after it
 * was sent) is never run again.
 */
export class WriteHold {
  readonly #waiters = new Set<() => void>();
  /** The role check a failure of the write node started: writes wait for it. */
  #suspect: Promise<void> | undefined;
  /** Bumped on every topology change: a retry needs one since the failure. */
  #changes = 0;

  constructor(
    private readonly host: WriteHoldHost,
    readonly holdMs: number,
  ) {}

  get #enabled(): boolean {
    return this.holdMs > 0 && this.host.topology.discovering;
  }

  /** True while writes would wait: no primary known, or a role check of a failure runs. */
  get changing(): boolean {
    // A hung write node (it stopped answering) is not changing role: writes fail as they would without the hold.
    return this.#enabled && (this.#suspect !== undefined || this.host.topology.lostSince !== 0) && this.host.hungReason(this.host.topology.writer) === undefined;
  }

  /** The topology changed: held writes look again. */
  changed(): void {
    this.#changes++;
    for (const wake of this.#waiters) wake();
  }

  /** The write node failed in a way that may mean a role change; `check` is the role check it started. */
  suspect(check: Promise<void>): void {
    if (!this.#enabled) return;
    const settled: Promise<void> = check.finally(() => {
      if (this.#suspect === settled) this.#suspect = undefined;
      for (const wake of this.#waiters) wake();
    });
    this.#suspect = settled;
  }

  /** A write (or its acquire) failed on the write node: a connection loss or 25006 triggers a role check, which held writes wait for. */
  writeFailed(err: unknown): void {
    const topology = this.host.topology;
    if (!topology.discovering) return;
    const cls = classifyFailure(err, { writeNode: true });
    const reason =
      cls === FailureClass.NodeGone
        ? 'connection loss of the write node'
        : cls === FailureClass.RoleChange
          ? sqlState(err) === '25006'
            ? '25006 from the write node'
            : 'the write node is changing role'
          : undefined;
    if (reason === undefined) return;
    // Held writes wait for a check that started after this failure (one already running may have asked before it).
    const joined = topology.checking;
    const check = topology.check(reason);
    this.suspect(joined ? check.then(() => topology.check(reason)) : check);
  }

  /** `promise`, its failure reported as the write node's (see `writeFailed`). */
  watch<T>(promise: Promise<T>): Promise<T> {
    if (!this.host.topology.discovering) return promise;
    return promise.catch((err: unknown) => {
      this.writeFailed(err);
      throw err;
    });
  }

  /**
   * Runs `send` on the write node; while the primary is changing, first waits for it (up to
   * `holdMs` from `startedAt`), and runs `send` again on the new primary when it failed in a way
   * `rerun` says proves it did not run.
   */
  run<T>(startedAt: number, send: (node: NodePool) => Promise<T>, rerun: Rerun): Promise<T> {
    if (this.changing) return this.#held({ startedAt, deadline: startedAt + this.holdMs, rerun, held: false, reported: false }, send);
    let node: NodePool;
    try {
      node = this.host.topology.requireWriter();
    } catch (err) {
      return Promise.reject(err);
    }
    if (!this.#enabled) return send(node);
    const changes = this.#changes;
    return send(node).catch((err: unknown) => this.recover(startedAt, rerun, node, changes, err, send));
  }

  /** Topology changes seen so far: what `recover` compares with the count taken before a send. */
  get changes(): number {
    return this.#changes;
  }

  /**
   * The failure path of `run`, for a write the caller sent itself on `node` (taken from
   * `topology.requireWriter()` while the primary was not `changing`, with `changes` read just before):
   * rejects with `err` unless the write may run again, then runs `send` on the new primary. Lets
   * the statement path attach one handler to the driver's promise instead of a chain of them.
   */
  recover<T>(startedAt: number, rerun: Rerun, node: NodePool, changes: number, err: unknown, send: (node: NodePool) => Promise<T>): Promise<T> {
    if (!this.#enabled) return Promise.reject(err);
    const write: HeldWrite = { startedAt, deadline: startedAt + this.holdMs, rerun, held: false, reported: false };
    return this.#afterFailure(write, err, node, changes).then(() => this.#held(write, send));
  }

  async #held<T>(write: HeldWrite, send: (node: NodePool) => Promise<T>): Promise<T> {
    write.held = true;
    for (;;) {
      while (this.changing && Date.now() < write.deadline) await this.#wait(write.deadline, () => !this.changing);
      let node: NodePool;
      try {
        node = this.host.topology.requireWriter();
      } catch (err) {
        this.#report(write, this.host.topology.writer, 'timed-out');
        throw err;
      }
      const changes = this.#changes;
      try {
        const result = await send(node);
        this.#report(write, node, 'sent');
        return result;
      } catch (err) {
        await this.#afterFailure(write, err, node, changes);
      }
    }
  }

  /** Rethrows `err` unless the write may run again: it did not run, the bound is not reached, and the role check it started found a change. */
  async #afterFailure(write: HeldWrite, err: unknown, node: NodePool, changes: number): Promise<void> {
    const topology = this.host.topology;
    if (didNotRun(err, write.rerun) && Date.now() < write.deadline) {
      await this.#wait(write.deadline, () => this.#suspect === undefined || this.#changes !== changes);
      const unchanged = this.#suspect === undefined && this.#changes === changes && topology.lostSince === 0 && topology.writer === node;
      if (!unchanged && Date.now() < write.deadline) {
        await new Promise((resolve) => setTimeout(resolve, RETRY_PAUSE_MS).unref());
        return;
      }
    }
    this.#report(write, node, 'failed');
    throw err;
  }

  /** Resolves on the next topology change or settled role check, when `done()` holds, or at `deadline`. */
  #wait(deadline: number, done: () => boolean): Promise<void> {
    return new Promise<void>((resolve) => {
      if (done()) {
        resolve();
        return;
      }
      const wake = () => {
        clearTimeout(timer);
        this.#waiters.delete(wake);
        resolve();
      };
      const timer = setTimeout(wake, Math.max(0, deadline - Date.now()));
      timer.unref();
      this.#waiters.add(wake);
    });
  }

  #report(write: HeldWrite, node: NodePool, outcome: 'sent' | 'failed' | 'timed-out'): void {
    if (!write.held || write.reported) return;
    write.reported = true;
    const waitedMs = Date.now() - write.startedAt;
    node.counters.heldWrites++;
    node.counters.heldWriteMs += waitedMs;
    if (outcome === 'timed-out') node.counters.holdTimeouts++;
    this.host.debug(
      outcome === 'timed-out'
        ? `Database "${this.host.name}": a write waited ${waitedMs}ms (failover.holdWritesMs ${this.holdMs}) and no node answers as the primary.`
        : `Database "${this.host.name}": a write waited ${waitedMs}ms for the primary to change and was ${outcome === 'sent' ? 'sent' : 'refused'} on ${node.name} (${node.config.address}).`,
    );
    if (this.host.emitting) this.host.emit({ type: 'write-held', database: this.host.name, node: node.name, role: node.role, at: Date.now(), waitedMs, outcome });
  }
}

interface HeldWrite {
  readonly startedAt: number;
  /** `startedAt + holdMs`: the write is not held past it. */
  readonly deadline: number;
  readonly rerun: Rerun;
  /** It waited for the primary (or ran again): reported once, when it is sent or fails. */
  held: boolean;
  reported: boolean;
}

/** The socket failed while connecting (e.g. `connect ECONNRESET` from a server shutting down): no statement was sent on it. */
function failedToConnect(err: unknown): boolean {
  return (err as { syscall?: unknown } | null)?.syscall === 'connect' && isConnectionError(err);
}

function didNotRun(err: unknown, rerun: Rerun): boolean {
  if (rerun === 'unsent' || isRoleChange(err) || (neverSent(err) && isConnectionError(err)) || failedToConnect(err)) return true;
  return rerun === 'terminated' && isSessionTerminated(err);
}
