// Compile-time checks of @WithSession()'s typing, run by `npm run typecheck` (tsc fails when a
// `@ts-expect-error` line compiles cleanly, or when a line meant to compile does not).
import { WithSession, type SessionContext } from '../../lib/index.js';

const tenantContext = (tenant: string): SessionContext => ({ settings: { 'app.tenant_id': tenant } });

export class Fits {
  tenant = 't';

  @WithSession({ settings: { 'app.tenant_id': 'a' } })
  staticContext(_anything: number): void {}

  @WithSession((tenant: string) => tenantContext(tenant))
  sameArguments(_tenant: string): void {}

  @WithSession((tenant: string) => tenantContext(tenant))
  async moreArguments(_tenant: string, _note: string, _count: number): Promise<void> {}

  @WithSession((tenant?: string) => (tenant === undefined ? undefined : tenantContext(tenant)))
  optional(_tenant?: string): void {}

  @WithSession(function (this: Fits) {
    return tenantContext(this.tenant);
  })
  fromThis(): void {}

  @WithSession(() => undefined)
  noContext(_id: number): void {}
}

export class DoesNotFit {
  // @ts-expect-error: the context function takes a string, the method's first parameter is a number.
  @WithSession((tenant: string) => tenantContext(tenant))
  wrongType(_id: number): void {}

  // @ts-expect-error: the context function needs two arguments, the method takes one.
  @WithSession((tenant: string, region: string) => tenantContext(tenant + region))
  tooFew(_tenant: string): void {}

  // @ts-expect-error: a context function returns a context or undefined, not a string.
  @WithSession((tenant: string) => tenant)
  wrongResult(_tenant: string): void {}
}
