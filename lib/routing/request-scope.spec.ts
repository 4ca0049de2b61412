import 'reflect-metadata';
import { BadRequestException } from '@nestjs/common';
import { ClusterRegistry } from '../core/cluster-registry.js';
import { RequestSession, requestScope } from './request-scope.js';
import { raiseMinLsn } from './routing-context.js';

// The request session's lazy consistency header: parsed on the first read of `minLsn`, never
// for a request that does not ask, a malformed one failing every read with the same 400.

const HEADER = 'x-pg-consistency-token';

function requestWith(value: string | undefined): { headers: Record<string, string | undefined>; reads: number } {
  const request = { reads: 0, headers: {} as Record<string, string | undefined> };
  Object.defineProperty(request.headers, HEADER, {
    enumerable: true,
    get() {
      request.reads++;
      return value;
    },
  });
  return request;
}

describe('RequestSession', () => {
  it('reads the header only when minLsn is first asked for, then keeps the parsed value', () => {
    const request = requestWith('0/AB');
    const session = new RequestSession(request, new ClusterRegistry(), { readsHeaders: true });
    expect(request.reads).toBe(0);
    expect(session.minLsn).toEqual(new Map([['default', 0xabn]]));
    expect(session.minLsn).toEqual(new Map([['default', 0xabn]]));
    expect(request.reads).toBe(1);
  });

  it('raises the carried position over the header, never lowers it', () => {
    const session = new RequestSession(requestWith('0/AB'), new ClusterRegistry(), { readsHeaders: true });
    raiseMinLsn(session, new Map([['default', 0x10n], ['reports', 0x5n]]));
    expect(session.minLsn).toEqual(new Map([['default', 0xabn], ['reports', 0x5n]]));
  });

  it('fails every read of a malformed header with the same 400', () => {
    const session = requestScope(requestWith('yesterday'), new ClusterRegistry(), { readsHeaders: true }).session;
    expect(() => session.minLsn).toThrow(BadRequestException);
    expect(() => session.minLsn).toThrow(`Cannot read the ${HEADER} header because it is not a consistency token`);
  });

  it('reads no header for a message (readsHeaders false)', () => {
    const request = requestWith('yesterday');
    expect(new RequestSession(request, new ClusterRegistry(), { readsHeaders: false }).minLsn).toBeUndefined();
    expect(request.reads).toBe(0);
  });
});
