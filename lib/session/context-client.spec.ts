import { contextQuery, type ContextTarget } from './context-client.js';
import { compileSessionContext } from './session-context.js';

// The order of statements a client lent under a session context sends, against a stand-in
// connection that tracks the transaction status as PostgreSQL would.

function harness(failOn?: RegExp) {
  const sent: string[] = [];
  let status = 'I';
  let live = true;
  const track = (text: string) => {
    sent.push(text);
    if (/^BEGIN/i.test(text)) status = 'T';
    else if (/^(COMMIT|ROLLBACK)/i.test(text)) status = 'I';
    if (failOn?.test(text)) {
      if (status === 'T') status = 'E';
      return Promise.reject(new Error(`failed: ${text}`));
    }
    return Promise.resolve({ rows: [{ text }] });
  };
  const target: ContextTarget = {
    live: () => live,
    transactionStatus: () => status,
    send: (text) => track(text),
  };
  const plain = (...args: unknown[]) => (live ? track(args[0] as string) : Promise.reject(new Error('released')));
  const ctx = compileSessionContext({ role: 'r', settings: { 'app.tenant_id': 'A' } });
  const query = contextQuery(target, ctx, 'BEGIN', plain) as (text: string, cb?: (err: unknown, res: unknown) => void) => Promise<unknown>;
  return { sent, query, ctx, release: () => (live = false) };
}

describe('contextQuery', () => {
  it('wraps a statement outside a transaction: BEGIN, the context, the statement, COMMIT', async () => {
    const { sent, query, ctx } = harness();
    await query('SELECT 1');
    expect(sent).toEqual(['BEGIN', ctx.sql, 'SELECT 1', 'COMMIT']);
  });

  it("applies the context right after the caller's BEGIN and leaves its transaction alone", async () => {
    const { sent, query, ctx } = harness();
    await query('BEGIN');
    await query('INSERT 1');
    await query('COMMIT');
    expect(sent).toEqual(['BEGIN', ctx.sql, 'INSERT 1', 'COMMIT']);
  });

  it('rolls back when the statement fails and reports its error', async () => {
    const { sent, query, ctx } = harness(/^SELECT 1\/0/);
    await expect(query('SELECT 1/0')).rejects.toThrow('failed: SELECT 1/0');
    expect(sent).toEqual(['BEGIN', ctx.sql, 'SELECT 1/0', 'ROLLBACK']);
  });

  it('sends statements one after another, and a callback form gets the result', async () => {
    const { sent, query, ctx } = harness();
    const viaCallback = new Promise((resolve) => query('SELECT 2', (_err, res) => resolve(res)));
    await Promise.all([query('SELECT 1'), viaCallback]);
    expect(sent).toEqual(['BEGIN', ctx.sql, 'SELECT 2', 'COMMIT', 'BEGIN', ctx.sql, 'SELECT 1', 'COMMIT']);
    await expect(viaCallback).resolves.toEqual({ rows: [{ text: 'SELECT 2' }] });
  });

  it('sends nothing of its own once the client was given back', async () => {
    const { sent, query, release } = harness();
    release();
    await expect(query('SELECT 1')).rejects.toThrow('released');
    expect(sent).toEqual([]);
  });
});
