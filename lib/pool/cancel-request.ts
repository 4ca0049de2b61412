import net from 'node:net';
import type pg from 'pg';

const CANCEL_REQUEST_CODE = 80877102;

/** What a connection's server needs to find the session to cancel (pg keeps it from BackendKeyData). */
interface CancelTarget {
  readonly host?: string;
  readonly port?: number;
  readonly processID?: number | null;
  readonly secretKey?: number | null;
}

/**
 * Sends the protocol's CancelRequest for the session of `client` (pgjdbc's and Npgsql's query
 * timeout): a new socket to the same server carrying the session's process id and secret key,
 * which works through PgBouncer, needs no login and takes no connection slot. Resolves `true`
 * once the server closed the request's socket (it has signalled the session), `false` when the
 * session is unknown, the server cannot be reached, or nothing happened within `timeoutMs`.
 * The socket never keeps the process alive.
 */
export function sendCancelRequest(client: pg.Client, timeoutMs: number): Promise<boolean> {
  const target = client as unknown as CancelTarget;
  const pid = target.processID;
  const key = target.secretKey;
  if (typeof pid !== 'number' || typeof key !== 'number') return Promise.resolve(false);
  const host = target.host ?? 'localhost';
  const port = target.port ?? 5432;
  return new Promise<boolean>((resolve) => {
    let settled = false;
    const socket = host.startsWith('/') ? net.connect(`${host}/.s.PGSQL.${port}`) : net.connect(port, host);
    const done = (landed: boolean) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      resolve(landed);
    };
    const timer = setTimeout(() => done(false), timeoutMs);
    timer.unref();
    socket.unref();
    socket.once('connect', () => {
      const packet = Buffer.alloc(16);
      packet.writeInt32BE(16, 0);
      packet.writeInt32BE(CANCEL_REQUEST_CODE, 4);
      packet.writeInt32BE(pid, 8);
      packet.writeInt32BE(key, 12);
      socket.end(packet);
    });
    socket.once('error', () => done(false));
    socket.once('close', (hadError) => done(!hadError));
    socket.resume();
  });
}
