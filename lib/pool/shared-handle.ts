import type { Client, PoolClient } from 'pg';
import { Checkout, checkoutOf, LEASED, type Leased } from './checkout.js';
import { Lending, type LendingPool, type Release } from './lent-client.js';
import type { PooledConnection } from './pooled-connection.js';

/**
 * The proxy handler of a connection's shared handle (one per physical connection, for its life).
 * Lent directly (`lendShared`), it serves that checkout as a `lend()` handle would; lent through a
 * `lend()` handle (`via`, a checkout with a session context), it forwards every call to it; never
 * lent, it shows the client as it is (an `onConnect` hook, a `connect` event).
 */
class SharedView implements ProxyHandler<Client>, Leased {
  readonly handle: PoolClient;
  lending: Lending | undefined = undefined;
  release: Release | undefined = undefined;
  via: PoolClient | undefined = undefined;

  constructor(client: Client) {
    this.handle = new Proxy(client, this) as unknown as PoolClient;
  }

  get lease(): Checkout | undefined {
    return this.via !== undefined ? checkoutOf(this.via) : this.lending?.lease;
  }

  get(target: Client, prop: string | symbol): unknown {
    if (prop === LEASED) return this;
    if (prop === 'then') return undefined;
    const via = this.via;
    if (via !== undefined) return Reflect.get(via, prop) as unknown;
    const lending = this.lending;
    return lending === undefined ? (Reflect.get(target, prop, target) as unknown) : lending.property(target, prop, this.release!);
  }

  set(target: Client, prop: string | symbol, value: unknown): boolean {
    const via = this.via;
    if (via !== undefined) return Reflect.set(via, prop, value);
    const lending = this.lending;
    return lending === undefined ? Reflect.set(target, prop, value, target) : lending.assign(target, prop, value);
  }
}

const shared = new WeakMap<PooledConnection, SharedView>();

function sharedView(conn: PooledConnection): SharedView {
  let view = shared.get(conn);
  if (view === undefined) {
    view = new SharedView(conn.client);
    shared.set(conn, view);
  }
  return view;
}

/**
 * The one client object of a physical connection, as `pg.Pool` hands out (libraries key
 * per-connection state on it: Kysely's `onCreateConnection`, prepared-statement maps, LISTEN
 * bookkeeping). Every call goes to the checkout it was last lent for: while that checkout is out
 * the calls run; once it was released they are refused (`ClientReleasedError`, `release()` twice
 * throws), until the pool lends the same connection again through this object. `checkout`: a
 * `lend()` handle the connection was just lent through, which the calls then go to.
 */
export function sharedHandle(conn: PooledConnection, checkout?: PoolClient): PoolClient {
  const view = sharedView(conn);
  if (checkout !== undefined) view.via = checkout;
  return view.handle;
}

/** Lends `conn` for a new checkout through its shared handle (`pg.Pool.connect()`): no handle of its own to build. */
export function lendShared(conn: PooledConnection, pool: LendingPool): PoolClient {
  const view = sharedView(conn);
  let lending = view.lending;
  if (lending === undefined) view.lending = lending = new Lending(conn, pool);
  else lending.lease = new Checkout(conn);
  view.release = lending.releaser();
  view.via = undefined;
  return view.handle;
}
