import 'reflect-metadata';
import { EventEmitter } from 'node:events';
import { PinnedTransaction } from '../transactions/pinned-transaction.js';
import { BadRequestException, Get } from '@nestjs/common';
import { PATH_METADATA } from '@nestjs/common/constants.js';
import { firstValueFrom, from, map, Observable, timer, switchMap } from 'rxjs';
import { READ_ONLY_METADATA } from '../pool.constants.js';
import { ReadOnly, Transactional } from '../pool.decorators.js';
import {
  formatConsistencyToken,
  formatLsn,
  markWrite,
  newSession,
  parseConsistencyToken,
  parseLsn,
  routingStorage,
  runInScope,
  runInTransaction,
  runReadOnly,
  type RoutingScope,
} from './routing-context.js';
import { carriedToken as readToken } from './request-scope.js';

const carriedToken = (request: unknown) => readToken(request, ['x-pg-consistency-token']);

// The AsyncLocalStorage scope on its own: nesting rules, transactions, writes, consistency tokens,
// and the @ReadOnly() wrapper (promises, Observables, metadata kept).

const current = () => routingStorage.getStore();
const tick = () => new Promise((resolve) => setTimeout(resolve, 1));

describe('WAL positions and consistency tokens', () => {
  it('parses and formats LSNs', () => {
    expect(parseLsn('0/16B3748')).toBe(0x16b3748n);
    expect(parseLsn('A/0')).toBe(0xan << 32n);
    expect(formatLsn(0x1_0000_00ffn)).toBe('1/FF');
    for (const bad of ['', '16B3748', '0/', 'x/1', '0/123456789', null, undefined]) expect(parseLsn(bad)).toBeUndefined();
  });

  it('reads bare positions as the default database and "name:position" as a named one', () => {
    expect(parseConsistencyToken('0/10', 'default')).toEqual(new Map([['default', 0x10n]]));
    expect(parseConsistencyToken(' analytics:0/20 , 0/10, analytics:0/5', 'default')).toEqual(
      new Map([
        ['analytics', 0x20n],
        ['default', 0x10n],
      ]),
    );
    for (const bad of ['abc', '0/10,', ':0/10', 'a:b:c', '0/10;0/20']) expect(parseConsistencyToken(bad, 'default')).toBeUndefined();
    expect(formatConsistencyToken('default', 0x10n, 'default')).toBe('0/10');
    expect(formatConsistencyToken('analytics', 0x10n, 'default')).toBe('analytics:0/10');
  });

  it('turns a malformed header into one 400 that names the header, the form and the value', () => {
    expect(carriedToken({ headers: {} })).toBeUndefined();
    expect(carriedToken({ headers: { 'x-pg-consistency-token': '0/AB' } })).toEqual(new Map([['default', 0xabn]]));
    expect(carriedToken({ headers: { 'x-pg-consistency-token': ['0/AB', 'reports:1/0'] } })).toEqual(
      new Map([
        ['default', 0xabn],
        ['reports', 1n << 32n],
      ]),
    );
    expect(() => carriedToken({ headers: { 'x-pg-consistency-token': 'yesterday' } })).toThrow(BadRequestException);
    expect(() => carriedToken({ headers: { 'x-pg-consistency-token': 'yesterday' } })).toThrow(
      'Cannot read the x-pg-consistency-token header because it is not a consistency token: expected a WAL position such as "0/16B3748" (default database) ' +
        'or "<database>:0/16B3748", several joined by ",", got "yesterday". Please make sure that the client sends back the value db.consistencyToken() returned, unchanged.',
    );
    expect(() => carriedToken({ headers: { 'x-pg-consistency-token': `0/1${'0'.repeat(2000)}` } })).toThrow(/got "0\/10{61}…"/);
  });
});

describe('routing scope', () => {
  it('runReadOnly opens a read-only scope that keeps the session, and nests', () => {
    const outer: RoutingScope = { readOnly: false, session: newSession(), tx: undefined };
    routingStorage.run(outer, () => {
      runReadOnly(() => {
        expect(current()?.readOnly).toBe(true);
        expect(current()?.session).toBe(outer.session);
      });
      expect(current()).toBe(outer);
    });
    expect(runReadOnly(() => current()?.readOnly)).toBe(true);
  });

  it('runInScope opens a read-write scope with a fresh session outside any scope, and joins an existing one', async () => {
    expect(routingStorage.getStore()).toBeUndefined();
    const [first, second] = await Promise.all([
      runInScope(async () => {
        await Promise.resolve();
        return routingStorage.getStore();
      }),
      runInScope(() => routingStorage.getStore()),
    ]);
    expect(first).toMatchObject({ readOnly: false, tx: undefined });
    expect(second!.session).not.toBe(first!.session);
    const outer: RoutingScope = { readOnly: true, session: newSession(), tx: undefined };
    expect(routingStorage.run(outer, () => runInScope(() => routingStorage.getStore()))).toBe(outer);
    expect(routingStorage.getStore()).toBeUndefined();
  });

  it('a transaction scope is never read-only, and a @ReadOnly() inside it is', () => {
    const tx = new PinnedTransaction('default', {} as never, new EventEmitter() as never, {});
    runReadOnly(() =>
      runInTransaction(tx, () => {
        expect(current()?.readOnly).toBe(false);
        expect(current()?.tx?.get('default')).toBe(tx);
        runReadOnly(() => {
          expect(current()?.readOnly).toBe(true);
          expect(current()?.tx?.get('default')).toBe(tx);
        });
      }),
    );
  });

  it('markWrite counts writes per database in the shared session; minLsn only rises', () => {
    const scope: RoutingScope = { readOnly: false, session: newSession(undefined, new Map([['default', 0x50n]])), tx: undefined };
    markWrite(scope, 'default');
    markWrite(scope, 'default');
    markWrite(scope, 'reports');
    markWrite(undefined, 'default');
    expect(scope.session.writes).toEqual(new Map([['default', 2], ['reports', 1]]));
    routingStorage.run(scope, () => {
      runReadOnly(() => expect(current()?.session.minLsn?.get('default')).toBe(0x60n), new Map([['default', 0x60n]]));
      runReadOnly(() => expect(current()?.session.minLsn?.get('default')).toBe(0x60n), new Map([['default', 0x10n]]));
    });
  });
});

describe('@ReadOnly()', () => {
  class Service {
    @ReadOnly()
    async viaAwaits(): Promise<boolean | undefined> {
      await tick();
      await Promise.resolve();
      return current()?.readOnly;
    }

    @ReadOnly()
    later(): Observable<boolean | undefined> {
      return timer(1).pipe(map(() => current()?.readOnly));
    }

    @ReadOnly({ minLsn: 'reports:0/99' })
    carried(): bigint | undefined {
      return current()?.session.minLsn?.get('reports');
    }

    @ReadOnly()
    @Get('route')
    handler(): string {
      return 'ok';
    }

    plain(): boolean | undefined {
      return current()?.readOnly;
    }
  }

  it('keeps the scope across awaits and for an Observable subscribed later, outside the call', async () => {
    const service = new Service();
    expect(await service.viaAwaits()).toBe(true);
    const later = service.later();
    expect(current()).toBeUndefined();
    expect(await firstValueFrom(later)).toBe(true);
    expect(await firstValueFrom(from([1]).pipe(switchMap(() => service.later())))).toBe(true);
    expect(service.plain()).toBeUndefined();
    expect(service.carried()).toBe(0x99n);
  });

  it('keeps the metadata of decorators applied before it and sets its own', () => {
    const handler = Service.prototype.handler;
    expect(Reflect.getMetadata(PATH_METADATA, handler)).toBe('route');
    expect(Reflect.getMetadata(READ_ONLY_METADATA, handler)).toEqual({});
    expect(handler.name).toBe('handler');
  });

  it('fails clearly on bad use', () => {
    expect(() => ReadOnly({ minLsn: 'soon' })).toThrow(
      'Invalid @ReadOnly() option `minLsn`: expected a WAL position such as "0/16B3748" (default database) or "<database>:0/16B3748", several joined by ",", got "soon" (string).',
    );
    expect(() => Transactional({ isolationLevel: 'chaos' as never })).toThrow('Invalid @Transactional() option `isolationLevel`');
    const descriptor = { value: 42, writable: true, configurable: true };
    expect(() => ReadOnly()(Service.prototype, 'answer', descriptor as PropertyDescriptor)).toThrow(
      'Cannot apply @ReadOnly() to Service.answer because it is not a method. Please make sure that @ReadOnly() decorates a method.',
    );
  });
});
