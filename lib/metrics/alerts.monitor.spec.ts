import { jest } from '@jest/globals';
import type { NodePool } from '../pool/node-pool.js';
import type { PoolEvent } from '../pool.events.js';
import { AlertMonitor, type AlertHost } from './alerts.monitor.js';
import { resolveAlertOptions } from './metrics.options.js';
import type { AlertOptions } from '../pool.interfaces.js';

// The monitor only reads node.state(); nodes are stubs whose counts the test sets.

interface FakeState {
  total: number;
  idle: number;
  inUse: number;
  waiting: number;
  max: number;
}

function fakeNode(name: string, state: FakeState): NodePool & { set(s: Partial<FakeState>): void } {
  let current = { ...state };
  return {
    name,
    role: name === 'primary' ? 'primary' : 'replica',
    ended: false,
    state: () => ({ ...current }),
    set(s: Partial<FakeState>) {
      current = { ...current, ...s };
    },
  } as unknown as NodePool & { set(s: Partial<FakeState>): void };
}

function host(nodes: NodePool[], alerts: AlertOptions = {}, emitting = true) {
  const events: PoolEvent[] = [];
  const logs: Array<['warn' | 'error', string]> = [];
  const h: AlertHost = {
    name: 'default',
    nodes,
    closed: false,
    emitting,
    options: { alerts: resolveAlertOptions(alerts) },
    emit: (e) => events.push(e),
    logger: { warn: (m) => logs.push(['warn', m]), error: (m) => logs.push(['error', m]) },
  };
  return { h, events, logs };
}

describe('AlertMonitor', () => {
  it('fires the seed thresholds: waiting > N, usage > 0.8 / 0.9 of max, no idle while callers wait', () => {
    const n = fakeNode('primary', { total: 20, idle: 0, inUse: 20, waiting: 11, max: 20 });
    const { h, events, logs } = host([n]);
    const fired = new AlertMonitor(h).check(1000);
    expect(fired.map((e) => e.alert).sort()).toEqual(['pool-exhausted', 'pool-usage-critical', 'pool-waiting']);
    expect(events).toHaveLength(3);
    const waiting = fired.find((e) => e.alert === 'pool-waiting')!;
    expect(waiting).toMatchObject({ type: 'alert', database: 'default', node: 'primary', role: 'primary', level: 'warning', value: 11, threshold: 10, at: 1000 });
    expect(waiting.state).toEqual({ total: 20, idle: 0, inUse: 20, waiting: 11, max: 20 });
    expect(waiting.message).toBe(
      'Pool "default/primary" has 11 callers waiting for a connection (threshold 10; in use 20/20, idle 0, waiting 11). Please make sure that clients are released quickly, or raise max.',
    );
    expect(fired.find((e) => e.alert === 'pool-usage-critical')).toMatchObject({ level: 'critical', value: 1, threshold: 0.9 });
    expect(logs.filter(([l]) => l === 'error')).toHaveLength(2);
    expect(logs.filter(([l]) => l === 'warn')).toHaveLength(1);
  });

  it('uses strict comparisons: exactly 80% is not high, 85% is, 90% is not critical', () => {
    const n = fakeNode('replica-1', { total: 10, idle: 2, inUse: 8, waiting: 0, max: 10 });
    const { h } = host([n]);
    const monitor = new AlertMonitor(h);
    expect(monitor.check(0)).toEqual([]);
    n.set({ inUse: 9, idle: 1 });
    expect(monitor.check(1).map((e) => e.alert)).toEqual(['pool-usage-high']);
    n.set({ inUse: 10, idle: 0 });
    expect(monitor.check(2).map((e) => e.alert)).toEqual(['pool-usage-critical']);
  });

  it('keeps each alert of each node quiet for cooldownMs', () => {
    const a = fakeNode('primary', { total: 5, idle: 0, inUse: 5, waiting: 1, max: 5 });
    const b = fakeNode('replica-1', { total: 5, idle: 0, inUse: 5, waiting: 1, max: 5 });
    const { h, events } = host([a, b], { cooldownMs: 5000, waitingThreshold: 0 });
    const monitor = new AlertMonitor(h);
    expect(monitor.check(10_000)).toHaveLength(6);
    expect(monitor.check(14_999)).toHaveLength(0);
    expect(monitor.check(15_000)).toHaveLength(6);
    expect(events).toHaveLength(12);
  });

  it('does nothing when nobody listens and logging is off; emits without logging when log is false', () => {
    const n = fakeNode('primary', { total: 5, idle: 0, inUse: 5, waiting: 3, max: 5 });
    const quiet = host([n], { log: false }, false);
    expect(new AlertMonitor(quiet.h).check(0)).toEqual([]);
    const listening = host([n], { log: false }, true);
    expect(new AlertMonitor(listening.h).check(0)).toHaveLength(2);
    expect(listening.logs).toEqual([]);
    expect(listening.events).toHaveLength(2);
  });

  it('does not start a timer when disabled, and its timer never keeps the process alive', () => {
    const n = fakeNode('primary', { total: 0, idle: 0, inUse: 0, waiting: 0, max: 5 });
    const spy = jest.spyOn(global, 'setInterval');
    const off = new AlertMonitor(host([n], { enabled: false }).h).start();
    expect(spy).not.toHaveBeenCalled();
    off.stop();
    const on = new AlertMonitor(host([n]).h).start();
    expect(spy).toHaveBeenCalledTimes(1);
    const timer = spy.mock.results[0]!.value as NodeJS.Timeout;
    expect(timer.hasRef()).toBe(false);
    on.stop();
    spy.mockRestore();
  });
});
