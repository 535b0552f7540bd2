/**
 * The processes network.test.ts runs inside (or outside) lab network
 * namespaces, usually under `nsenter --net=<path>`:
 *
 * - `echo HOST PORT`: a TCP echo server; prints "listening" once it is.
 *   Half-open allowed, so it answers everything sent before the client's
 *   end, then ends too.
 * - `send HOST PORT BYTES`: connects, sends BYTES of a fixed pattern, ends
 *   its side, reads until the server ends, and prints one JSON line:
 *   {received, sent, got} (the SHA-256 of what it sent and got, and how
 *   many bytes it got), or {error} with the error's code.
 */
import { createHash } from 'node:crypto';
import { connect, createServer } from 'node:net';

const [mode, host, port, bytes] = process.argv.slice(2);

/** A pattern with no short period, so bytes out of order or lost change the hash. */
function payload(n: number): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = (i * 131 + (i >> 8) * 7 + (i >> 16)) & 0xff;
  return b;
}

function send(): void {
  const out = payload(Number(bytes));
  const got: Buffer[] = [];
  const s = connect({ host: host!, port: Number(port), allowHalfOpen: true });
  const print = (o: object) => {
    process.stdout.write(`${JSON.stringify(o)}\n`);
    process.exit(0);
  };
  s.setTimeout(10_000, () => s.destroy(Object.assign(new Error('timed out'), { code: 'ETIMEDOUT' })));
  s.on('error', (e: NodeJS.ErrnoException) => print({ error: e.code ?? e.message }));
  s.on('data', (d: Buffer) => got.push(d));
  s.on('end', () => {
    const all = Buffer.concat(got);
    const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
    print({ got: all.length, sent: sha(out), received: sha(all) });
  });
  s.end(out);
}

function echo(): void {
  createServer({ allowHalfOpen: true }, (s) => {
    s.on('error', () => s.destroy());
    s.pipe(s);
  }).listen(Number(port), host, () => process.stdout.write('listening\n'));
}

if (mode === 'send') send();
else if (mode === 'echo') echo();
else {
  process.stderr.write('usage: network-peer.js echo HOST PORT | send HOST PORT BYTES\n');
  process.exit(2);
}
