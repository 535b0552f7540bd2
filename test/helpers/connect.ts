/**
 * A client of the lab's HTTP CONNECT servers (src/lab/node/egress.ts), as
 * the API server's HTTPConnect egress dialer uses them: CONNECT, read the
 * answer's head, then use the connection.
 */
import { connect, type Socket } from 'node:net';

export interface Connected {
  /** The answer's head, byte for byte, up to and including its blank line. */
  head: string;
  /** What came after the head before we spoke (the API server's dialer fails on any). */
  extra: Buffer;
  socket: Socket;
  /** Everything after the head, once the server closed its side. */
  rest(): Promise<Buffer>;
}

/** CONNECTs to `target` through the CONNECT server on unix socket `path` (or sends `request` instead). */
export function connectVia(path: string, target: string, request?: string): Promise<Connected> {
  return new Promise((resolve, reject) => {
    const socket = connect({ path, allowHalfOpen: true });
    let buf = Buffer.alloc(0);
    let headEnd = -1;
    const ended = new Promise<void>((r) => socket.once('end', () => r()));
    socket.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      if (headEnd >= 0) return;
      const i = buf.indexOf('\r\n\r\n');
      if (i < 0) return;
      headEnd = i + 4;
      // Anything the server sent right behind the head arrives within a moment.
      setTimeout(
        () =>
          resolve({
            head: buf.subarray(0, headEnd).toString('latin1'),
            extra: Buffer.from(buf.subarray(headEnd)),
            socket,
            rest: () => ended.then(() => buf.subarray(headEnd)),
          }),
        50,
      );
    });
    socket.once('error', reject);
    void ended.then(() => {
      if (headEnd < 0) reject(new Error(`closed before an answer: ${buf.toString('latin1')}`));
    });
    socket.write(request ?? `CONNECT ${target} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`);
  });
}

/** Sends `bytes` on a connection CONNECT carried, ends our side, and resolves with every byte back once the other side ends. */
export async function roundTrip(c: Connected, bytes: Buffer): Promise<Buffer> {
  c.socket.end(bytes);
  return c.rest();
}

/** The body of an answer that is not 200 (the server closes after it). */
export async function rest(c: Connected): Promise<string> {
  return (await c.rest()).toString('utf8');
}
