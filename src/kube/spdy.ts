/**
 * A minimal SPDY/3.1 session over an already-upgraded socket, as the Go side
 * of Kubernetes (github.com/moby/spdystream, under k8s.io/apimachinery's
 * httpstream/spdy) speaks it. Server side (the lab's kubelet): the peer opens
 * streams (SYN_STREAM), we accept them (SYN_REPLY) or refuse them
 * (RST_STREAM). Client side (meshfed's exec, as kubectl's): we open streams
 * with odd ids (`openStream`), each usable once the peer's SYN_REPLY came
 * (`stream.ready`), and refuse any stream the peer opens. Both sides send
 * DATA frames and half-close with FIN; the peer's PINGs are echoed (those of
 * the other parity than ours: spdystream's rule), SETTINGS and WINDOW_UPDATE
 * are read and ignored, GOAWAY ends the session once no stream is open.
 *
 * When the peer ends the connection cleanly, the frames already read are
 * still handled (a FIN, the last output, a Status) before the session ends,
 * unless a stream's reader is not keeping up (then they are dropped, as
 * before).
 *
 * Header blocks are zlib-compressed with the SPDY/3 dictionary, one inflate
 * context for everything the peer sends and one deflate context for ours,
 * each block ending at a Z_SYNC_FLUSH (as spdystream's Framer does).
 *
 * Flow control: spdystream (v0.5.0) implements none. It never sends
 * WINDOW_UPDATE, never sends SETTINGS, never limits what it sends by a
 * window, and drops the WINDOW_UPDATE and SETTINGS frames it receives
 * (Connection.Serve queues them and frameHandler logs "unhandled frame
 * type"). Its back-pressure is TCP's: a stream's data channel is unbuffered,
 * so a reader that does not read stops the connection's frame reader. So this
 * session sends no WINDOW_UPDATE and must not hold its own sends to the
 * 64 KiB SPDY/3.1 initial window (the Go side would never open it again).
 * On receive it does as spdystream does: while a stream's reader is not
 * keeping up, no more frames are handled, for any stream; up to 1 MiB more
 * is read from the socket and held, then the socket is paused (so the peer
 * is held back by TCP). A peer that vanishes while the socket is paused is
 * not noticed until the reader catches up (the kubelet has an idle timeout
 * for that; this has none).
 *
 * A malformed frame, a bad header block or a socket error closes the session
 * (GOAWAY with PROTOCOL_ERROR when the socket is still writable) and is
 * reported on 'close'; nothing here throws or emits 'error' at the caller.
 */
import { EventEmitter, once } from 'node:events';
import { Duplex } from 'node:stream';
import { createDeflate, createInflate, type Deflate, type Inflate, constants as zc } from 'node:zlib';

const VERSION = 3;
const SYN_STREAM = 1;
const SYN_REPLY = 2;
const RST_STREAM = 3;
const SETTINGS = 4;
const PING = 6;
const GOAWAY = 7;
const HEADERS = 8;
const WINDOW_UPDATE = 9;
const FLAG_FIN = 0x01;
const FLAG_UNIDIRECTIONAL = 0x02;

/** RST_STREAM status codes (SPDY/3 §2.6.3). */
export const RstStatus = {
  PROTOCOL_ERROR: 1,
  INVALID_STREAM: 2,
  REFUSED_STREAM: 3,
  CANCEL: 5,
  INTERNAL_ERROR: 6,
} as const;

const GOAWAY_OK = 0;
const GOAWAY_PROTOCOL_ERROR = 1;

/** Our DATA frames carry at most this much (the format allows 2^24-1). */
const MAX_DATA_CHUNK = 64 * 1024;
/** A decompressed header block larger than this is refused (no zlib bombs). */
const MAX_HEADER_BLOCK = 256 * 1024;
const MAX_STREAMS = 100;
/** Input read ahead while a stream's reader is not keeping up, before the socket is paused. */
const MAX_BUFFERED_INPUT = 1024 * 1024;

// The SPDY/3 header compression dictionary (draft-mbelshe-httpbis-spdy-00
// §2.6.10.1; the same 1423 bytes as headerDictionary in moby/spdystream
// spdy/dictionary.go): 65 length-prefixed header words, then a tail of
// status codes and common values. The test checks its SHA-256.
// biome-ignore format: a list of words
const DICTIONARY_WORDS = [
  'options', 'head', 'post', 'put', 'delete', 'trace', 'accept', 'accept-charset', 'accept-encoding',
  'accept-language', 'accept-ranges', 'age', 'allow', 'authorization', 'cache-control', 'connection',
  'content-base', 'content-encoding', 'content-language', 'content-length', 'content-location',
  'content-md5', 'content-range', 'content-type', 'date', 'etag', 'expect', 'expires', 'from', 'host',
  'if-match', 'if-modified-since', 'if-none-match', 'if-range', 'if-unmodified-since', 'last-modified',
  'location', 'max-forwards', 'pragma', 'proxy-authenticate', 'proxy-authorization', 'range', 'referer',
  'retry-after', 'server', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'user-agent', 'vary', 'via',
  'warning', 'www-authenticate', 'method', 'get', 'status', '200 OK', 'version', 'HTTP/1.1', 'url',
  'public', 'set-cookie', 'keep-alive', 'origin',
];
const DICTIONARY_TAIL =
  '100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505' +
  '203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request401 Unauthorized' +
  '403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented503 Service Unavailable' +
  'Jan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMT' +
  'chunked,text/html,image/png,image/jpg,image/gif,application/xml,application/xhtml+xml,text/plain,' +
  'text/javascript,publicprivatemax-age=gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.';

export const SPDY3_DICTIONARY: Buffer = Buffer.concat([
  ...DICTIONARY_WORDS.flatMap((w) => [u32(w.length), Buffer.from(w, 'latin1')]),
  Buffer.from(DICTIONARY_TAIL, 'latin1'),
]);

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n >>> 0);
  return b;
}

class ProtocolError extends Error {}

/** A control frame: 1 | version(15) | type(16) | flags(8) | length(24) | payload. */
function controlFrame(type: number, flags: number, payload: Buffer): Buffer {
  const h = Buffer.alloc(8);
  h.writeUInt16BE(0x8000 | VERSION, 0);
  h.writeUInt16BE(type, 2);
  h.writeUInt32BE(((flags & 0xff) << 24) | payload.length, 4);
  return Buffer.concat([h, payload]);
}

/** A data frame: 0 | stream id(31) | flags(8) | length(24) | data. */
function dataFrame(id: number, fin: boolean, data: Buffer): Buffer {
  const h = Buffer.alloc(8);
  h.writeUInt32BE(id & 0x7fffffff, 0);
  h.writeUInt32BE(((fin ? FLAG_FIN : 0) << 24) | data.length, 4);
  return Buffer.concat([h, data]);
}

/** An uncompressed SPDY/3 name/value block: count, then (length, name, length, value) each a u32 length. */
export function encodeHeaderBlock(headers: Record<string, string>): Buffer {
  const parts: Buffer[] = [u32(Object.keys(headers).length)];
  for (const [name, value] of Object.entries(headers)) {
    const n = Buffer.from(name.toLowerCase(), 'utf8');
    const v = Buffer.from(value, 'utf8');
    parts.push(u32(n.length), n, u32(v.length), v);
  }
  return Buffer.concat(parts);
}

/** Parses an uncompressed name/value block; several values of one name (NUL-separated) are joined with ", ". */
export function decodeHeaderBlock(block: Buffer): Record<string, string> {
  let at = 0;
  const need = (n: number) => {
    if (at + n > block.length) throw new ProtocolError('truncated header block');
  };
  const str = () => {
    need(4);
    const len = block.readUInt32BE(at);
    at += 4;
    need(len);
    const s = block.toString('utf8', at, at + len);
    at += len;
    return s;
  };
  need(4);
  const count = block.readUInt32BE(0);
  at = 4;
  if (count > (block.length - 4) / 8) throw new ProtocolError(`header block claims ${count} headers`);
  const out: Record<string, string> = Object.create(null);
  for (let i = 0; i < count; i++) {
    const name = str().toLowerCase();
    const value = str().split('\0').join(', ');
    if (name === '' || name in out)
      throw new ProtocolError(`bad or repeated header name ${JSON.stringify(name)}`);
    out[name] = value;
  }
  return out;
}

interface OutItem {
  frame: Buffer | Promise<Buffer>;
  done?: () => void;
}

export interface SpdySessionEvents {
  stream: [SpdyStream];
  /** The session is over; `err` says why when it did not end cleanly. */
  close: [Error | undefined];
}

export interface SpdySessionOptions {
  /** We are the client: our streams and pings have odd ids, the peer's even ones (none are accepted). */
  client?: boolean;
}

/** One SPDY/3.1 connection: the server side accepts the peer's streams, the client side opens its own. */
export class SpdySession extends EventEmitter<SpdySessionEvents> {
  private readonly streams = new Map<number, SpdyStream>();
  private readonly inflate: Inflate;
  private readonly deflate: Deflate;
  private deflateChain: Promise<unknown> = Promise.resolve();
  private inBufs: Buffer[] = [];
  private inLen = 0;
  private pumping = false;
  /** Streams whose readable buffer is full: while any, no frame is handled. */
  private readonly blocked = new Set<SpdyStream>();
  private readonly outq: OutItem[] = [];
  private flushing = false;
  private flushedWaiters: Array<() => void> = [];
  private lastPeerStreamId = 0;
  private peerGoneAway = false;
  private closing = false;
  private closed = false;
  /** The socket ended cleanly: handle what was read, then finish. */
  private inputEnded = false;
  private readonly client: boolean;
  private nextStreamId: number;

  constructor(
    private readonly socket: Duplex,
    opts: SpdySessionOptions = {},
  ) {
    super();
    this.client = opts.client ?? false;
    this.nextStreamId = this.client ? 1 : 2;
    this.inflate = createInflate({ dictionary: SPDY3_DICTIONARY });
    this.deflate = createDeflate({ dictionary: SPDY3_DICTIONARY });
    // Errors of the zlib contexts surface through the promises that use them.
    this.inflate.on('error', () => {});
    this.deflate.on('error', () => {});
    socket.on('data', (chunk: Buffer) => {
      if (this.closing) return; // read to the peer's FIN, but no more frames
      this.inBufs.push(chunk);
      this.inLen += chunk.length;
      // While a stream is full, frames wait here; past a bound the socket is
      // not read at all (TCP back-pressure, as spdystream's). Below it, the
      // socket is still read, so a peer that goes away is still noticed.
      if (this.blocked.size > 0 && this.inLen > MAX_BUFFERED_INPUT) socket.pause();
      void this.pump();
    });
    socket.on('end', () => this.endOfInput());
    socket.on('close', () => this.endOfInput());
    socket.on('error', (e: Error) => {
      socket.destroy();
      this.finish(e);
    });
  }

  /** Whether we are the client side. */
  get isClient(): boolean {
    return this.client;
  }

  /**
   * Opens a stream (client side; SYN_STREAM with `headers`). Its `ready`
   * resolves with the peer's SYN_REPLY headers, and rejects when the peer
   * resets it or the session ends first. Throws when the session is closing.
   */
  openStream(headers: Record<string, string>): SpdyStream {
    if (this.closing || this.peerGoneAway) throw new Error('the SPDY session is closing');
    const id = this.nextStreamId;
    if (id > 0x7fffffff) throw new Error('no SPDY stream ids left');
    this.nextStreamId += 2;
    const s = new SpdyStream(this, id, headers, false, true);
    this.streams.set(id, s);
    // stream id | associated-to stream id (none) | priority (3 bits) + unused | slot | header block
    const head = Buffer.alloc(10);
    head.writeUInt32BE(id, 0);
    this.sendHeaders(SYN_STREAM, 0, head, headers);
    return s;
  }

  /** How many streams are open. */
  get openStreams(): number {
    return this.streams.size;
  }

  /**
   * Ends the session: GOAWAY (OK, or PROTOCOL_ERROR when `err` is given),
   * drops the streams still open (destroyed, without RST_STREAM: the GOAWAY
   * and the end of the connection say it; on a clean end, one the peer
   * finished is destroyed only once its reader saw the end, so that its
   * last data and 'end' are not lost), and ends the socket once the frames
   * already queued have been written.
   */
  close(err?: Error): void {
    if (this.closing) return;
    this.closing = true;
    const goaway = Buffer.alloc(8);
    goaway.writeUInt32BE(this.lastPeerStreamId, 0);
    goaway.writeUInt32BE(err ? GOAWAY_PROTOCOL_ERROR : GOAWAY_OK, 4);
    this.send(controlFrame(GOAWAY, 0, goaway));
    for (const s of this.streams.values()) s.sessionEnded(err);
    this.streams.clear();
    this.blocked.clear();
    this.inBufs = [];
    this.socket.resume();
    this.whenFlushed(() => {
      this.socket.end();
      // A peer that does not close its side is cut off.
      setTimeout(() => this.socket.destroy(), 5_000).unref();
      this.finish(err);
    });
  }

  // ---- receiving -------------------------------------------------------

  /** Handles the complete frames buffered, one at a time (header blocks inflate asynchronously, in order). */
  private async pump(): Promise<void> {
    if (this.pumping) return;
    this.pumping = true;
    try {
      while (!this.closing && this.blocked.size === 0) {
        const frame = this.nextFrame();
        if (!frame) break;
        await this.handleFrame(frame);
      }
    } catch (e) {
      this.close(e instanceof Error ? e : new Error(String(e)));
    } finally {
      this.pumping = false;
    }
    // The peer ended the connection: done once every complete frame was handled (or a reader is stuck).
    if (this.inputEnded && !this.closing && (this.blocked.size > 0 || this.inLen < 8 + this.pendingLength()))
      this.finish(undefined);
  }

  /** The length of the next frame's payload, when its header is in. */
  private pendingLength(): number {
    if (this.inLen < 8) return 0;
    if (this.inBufs[0]!.length < 8) this.inBufs = [Buffer.concat(this.inBufs)];
    return this.inBufs[0]!.readUInt32BE(4) & 0xffffff;
  }

  private endOfInput(): void {
    if (this.inputEnded || this.closed) return;
    this.inputEnded = true;
    if (this.closing || this.blocked.size > 0) this.finish(undefined);
    else void this.pump();
  }

  private nextFrame(): Buffer | undefined {
    if (this.inLen < 8) return undefined;
    if (this.inBufs[0]!.length < 8) this.inBufs = [Buffer.concat(this.inBufs)];
    const length = this.inBufs[0]!.readUInt32BE(4) & 0xffffff;
    if (this.inLen < 8 + length) return undefined;
    const all = this.inBufs.length === 1 ? this.inBufs[0]! : Buffer.concat(this.inBufs);
    const rest = all.subarray(8 + length);
    this.inBufs = rest.length > 0 ? [rest] : [];
    this.inLen = rest.length;
    return all.subarray(0, 8 + length);
  }

  private async handleFrame(frame: Buffer): Promise<void> {
    const flags = frame[4]!;
    const p = frame.subarray(8);
    if ((frame[0]! & 0x80) === 0) return this.onData(frame.readUInt32BE(0) & 0x7fffffff, flags, p);
    const version = frame.readUInt16BE(0) & 0x7fff;
    if (version !== VERSION) throw new ProtocolError(`SPDY version ${version} (want ${VERSION})`);
    const type = frame.readUInt16BE(2);
    const minLength: Record<number, number> = {
      [SYN_STREAM]: 10,
      [SYN_REPLY]: 4,
      [RST_STREAM]: 8,
      [SETTINGS]: 4,
      [PING]: 4,
      [GOAWAY]: 8,
      [HEADERS]: 4,
      [WINDOW_UPDATE]: 8,
    };
    if (p.length < (minLength[type] ?? 0))
      throw new ProtocolError(`control frame ${type}: ${p.length} bytes`);
    switch (type) {
      case SYN_STREAM: {
        const id = p.readUInt32BE(0) & 0x7fffffff;
        const headers = decodeHeaderBlock(await this.inflateBlock(p.subarray(10)));
        return this.onSynStream(id, flags, headers);
      }
      case SYN_REPLY:
      case HEADERS: {
        // Every block must go through the inflate context to keep it in step
        // with the peer's, even one for a stream we no longer have.
        const id = p.readUInt32BE(0) & 0x7fffffff;
        const headers = decodeHeaderBlock(await this.inflateBlock(p.subarray(4)));
        const s = this.streams.get(id);
        if (type === SYN_REPLY) s?.peerReplied(headers);
        if (flags & FLAG_FIN) s?.remoteFinished();
        return;
      }
      case RST_STREAM: {
        const s = this.streams.get(p.readUInt32BE(0) & 0x7fffffff);
        if (s) {
          this.streams.delete(s.id);
          s.peerReset();
        }
        return;
      }
      case SETTINGS: {
        if (p.length !== 4 + 8 * p.readUInt32BE(0)) throw new ProtocolError('SETTINGS length');
        return; // nothing here depends on the peer's settings
      }
      case PING: {
        // The client's pings have odd ids, the server's even ones: echo the
        // peer's. Ours would come back with our parity, and we send none.
        if (p.readUInt32BE(0) % 2 === (this.client ? 0 : 1))
          this.send(controlFrame(PING, 0, Buffer.from(p.subarray(0, 4))));
        return;
      }
      case GOAWAY:
        this.peerGoneAway = true;
        if (this.streams.size === 0) this.close();
        return;
      case WINDOW_UPDATE:
        return; // see the flow-control note at the top
      default:
        return; // SPDY/3 §2.2.1: unknown control frames are ignored
    }
  }

  private onSynStream(id: number, flags: number, headers: Record<string, string>): void {
    if (id === 0 || id % 2 === (this.client ? 1 : 0) || id <= this.lastPeerStreamId)
      throw new ProtocolError(`SYN_STREAM with stream id ${id} after ${this.lastPeerStreamId}`);
    this.lastPeerStreamId = id;
    // A client takes no streams from the server (kubectl's exec gets none).
    if (this.client || this.peerGoneAway || this.streams.size >= MAX_STREAMS) {
      this.rst(id, RstStatus.REFUSED_STREAM);
      return;
    }
    const s = new SpdyStream(this, id, headers, (flags & FLAG_UNIDIRECTIONAL) !== 0);
    this.streams.set(id, s);
    if (flags & FLAG_FIN) s.remoteFinished();
    this.emit('stream', s);
  }

  private onData(id: number, flags: number, data: Buffer): void {
    if (id === 0) throw new ProtocolError('data frame on stream 0');
    const s = this.streams.get(id);
    // Data for a stream we no longer have (reset, or closed) is dropped, as spdystream does.
    if (!s) return;
    if (data.length > 0 && !s.received(data)) this.blocked.add(s);
    if (flags & FLAG_FIN) s.remoteFinished();
  }

  /** A stream's reader wants more: read the socket again once no stream is full. */
  unblock(s: SpdyStream): void {
    if (!this.blocked.delete(s) || this.blocked.size > 0 || this.closing) return;
    this.socket.resume();
    void this.pump();
  }

  private inflateBlock(compressed: Buffer): Promise<Buffer> {
    return zlibBlock(this.inflate, compressed, MAX_HEADER_BLOCK);
  }

  // ---- sending ---------------------------------------------------------

  /** Queues a frame; `done` runs once it is handed to the socket below its high-water mark. */
  private send(frame: Buffer | Promise<Buffer>, done?: () => void): void {
    this.outq.push(done ? { frame, done } : { frame });
    void this.flushOut();
  }

  private async flushOut(): Promise<void> {
    if (this.flushing) return;
    this.flushing = true;
    try {
      for (let item = this.outq.shift(); item; item = this.outq.shift()) {
        let frame: Buffer | undefined;
        try {
          frame = await item.frame;
        } catch (e) {
          this.close(e instanceof Error ? e : new Error(String(e)));
        }
        if (frame && this.socket.writable && !this.socket.write(frame)) await drainOrClose(this.socket);
        item.done?.();
      }
    } finally {
      this.flushing = false;
    }
    const waiters = this.flushedWaiters;
    this.flushedWaiters = [];
    for (const fn of waiters) fn();
  }

  private whenFlushed(fn: () => void): void {
    if (!this.flushing && this.outq.length === 0) fn();
    else this.flushedWaiters.push(fn);
  }

  /** SYN_REPLY for stream `id`. */
  reply(id: number, headers: Record<string, string>, fin: boolean): void {
    this.sendHeaders(SYN_REPLY, fin ? FLAG_FIN : 0, u32(id), headers);
  }

  /** A control frame of `head` and a header block, compressed in order with every other block we send. */
  private sendHeaders(type: number, flags: number, head: Buffer, headers: Record<string, string>): void {
    const block = encodeHeaderBlock(headers);
    const compressed = this.deflateChain.then(() => zlibBlock(this.deflate, block, Number.POSITIVE_INFINITY));
    this.deflateChain = compressed.catch(() => {});
    this.send(compressed.then((c) => controlFrame(type, flags, Buffer.concat([head, c]))));
  }

  /** DATA frames for `data` (FIN on the last when `fin`); `done` once written. */
  data(id: number, data: Buffer, fin: boolean, done: () => void): void {
    if (data.length === 0) {
      this.send(dataFrame(id, fin, data), done);
      return;
    }
    for (let at = 0; at < data.length; at += MAX_DATA_CHUNK) {
      const last = at + MAX_DATA_CHUNK >= data.length;
      const chunk = data.subarray(at, at + MAX_DATA_CHUNK);
      this.send(dataFrame(id, fin && last, chunk), last ? done : undefined);
    }
  }

  rst(id: number, status: number): void {
    const p = Buffer.alloc(8);
    p.writeUInt32BE(id & 0x7fffffff, 0);
    p.writeUInt32BE(status, 4);
    this.send(controlFrame(RST_STREAM, 0, p));
  }

  /** A stream is done with (both sides finished, or reset). */
  forget(s: SpdyStream): void {
    this.streams.delete(s.id);
    this.blocked.delete(s);
    if (this.peerGoneAway && this.streams.size === 0) this.close();
    else if (this.blocked.size === 0 && !this.closing) {
      this.socket.resume();
      void this.pump();
    }
  }

  get isClosing(): boolean {
    return this.closing;
  }

  private finish(err: Error | undefined): void {
    if (this.closed) return;
    this.closed = true;
    this.closing = true;
    for (const s of this.streams.values()) s.sessionEnded(err);
    this.streams.clear();
    this.inflate.close();
    this.deflate.close();
    this.emit('close', err);
  }
}

/** Writes `input` to a zlib stream, flushes with Z_SYNC_FLUSH and resolves with what came out. */
function zlibBlock(z: Inflate | Deflate, input: Buffer, max: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const out: Buffer[] = [];
    let size = 0;
    const onData = (b: Buffer) => {
      size += b.length;
      if (size > max) {
        cleanup();
        reject(new ProtocolError(`header block over ${max} bytes`));
      } else out.push(b);
    };
    const onError = (e: Error) => {
      cleanup();
      reject(new ProtocolError(`header block: ${e.message}`));
    };
    const cleanup = () => {
      z.off('data', onData);
      z.off('error', onError);
    };
    z.on('data', onData);
    z.on('error', onError);
    z.write(input);
    z.flush(zc.Z_SYNC_FLUSH, () => {
      cleanup();
      if (size <= max) resolve(Buffer.concat(out));
    });
  });
}

async function drainOrClose(socket: Duplex): Promise<void> {
  const ac = new AbortController();
  await Promise.race([
    once(socket, 'drain', { signal: ac.signal }),
    once(socket, 'close', { signal: ac.signal }),
  ]).catch(() => {});
  ac.abort();
}

/**
 * A stream the peer opened, or one we opened (`openStream`). Readable: the
 * peer's data, ending at its FIN. Writable: our data; `end()` sends FIN. On a
 * stream the peer opened, writing replies first when `reply()` was not called
 * (spdystream drops data that comes before the reply). On one we opened,
 * `ready` says when the peer accepted it (write after that, as client-go
 * does).
 */
export class SpdyStream extends Duplex {
  private replied = false;
  private localFin = false;
  private remoteFin = false;
  private wasReset = false;
  /** Resolves with the peer's SYN_REPLY headers (streams we opened; at once for the peer's). */
  readonly ready: Promise<Record<string, string>>;
  private settleReady: { resolve: (h: Record<string, string>) => void; reject: (e: Error) => void };
  private readySettled = false;

  constructor(
    private readonly session: SpdySession,
    readonly id: number,
    /** The SYN_STREAM's headers, names lower case. */
    readonly headers: Record<string, string>,
    unidirectional: boolean,
    /** We opened it: the peer replies, not us. */
    readonly local = false,
  ) {
    super({ allowHalfOpen: true });
    let settle!: SpdyStream['settleReady'];
    this.ready = new Promise((resolve, reject) => {
      settle = { resolve, reject };
    });
    this.ready.catch(() => {}); // a caller that never asks is not an unhandled rejection
    this.settleReady = settle;
    if (local) this.replied = true;
    else this.markReady({});
    if (unidirectional) {
      this.localFin = true;
      this.replied = true; // a unidirectional stream gets no reply (SPDY/3 §2.3.2)
      super.end();
    }
  }

  /** Accepts the stream (SYN_REPLY); `fin` also ends our side. */
  reply(headers: Record<string, string> = {}, fin = false): void {
    if (this.replied || this.destroyed) return;
    this.replied = true;
    this.session.reply(this.id, headers, fin);
    if (fin) {
      this.localFin = true;
      this.end();
    }
  }

  /** Refuses or aborts the stream (RST_STREAM). */
  reset(status: number = RstStatus.CANCEL): void {
    if (this.wasReset || this.destroyed) return;
    this.wasReset = true;
    this.session.rst(this.id, status);
    this.destroy();
  }

  private markReady(headers: Record<string, string>, err?: Error): void {
    if (this.readySettled) return;
    this.readySettled = true;
    if (err) this.settleReady.reject(err);
    else this.settleReady.resolve(headers);
  }

  /** @internal the peer accepted a stream we opened. */
  peerReplied(headers: Record<string, string>): void {
    if (this.local) this.markReady(headers);
  }

  /** @internal the peer's data; false when the reader is not keeping up. */
  received(data: Buffer): boolean {
    if (this.remoteFin || this.destroyed) return true;
    return this.push(data);
  }

  /** @internal the peer half-closed. */
  remoteFinished(): void {
    if (this.remoteFin) return;
    this.remoteFin = true;
    this.push(null);
    this.maybeDone();
  }

  /** @internal the session is over: a stream the peer finished cleanly still delivers its end. */
  sessionEnded(err: Error | undefined): void {
    if (this.destroyed) return;
    if (err || !this.remoteFin || this.readableEnded) {
      this.destroy();
      return;
    }
    this.markReady({}, new Error(`SPDY stream ${this.id}: the session ended`));
    this.once('end', () => this.destroy());
  }

  /** @internal the peer reset the stream. */
  peerReset(): void {
    this.wasReset = true;
    this.markReady({}, new Error(`SPDY stream ${this.id} reset by the peer`));
    this.destroy();
  }

  override _read(): void {
    this.session.unblock(this);
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    if (this.wasReset || this.session.isClosing) {
      cb();
      return;
    }
    this.reply();
    this.session.data(this.id, chunk, false, () => cb());
  }

  override _final(cb: (err?: Error | null) => void): void {
    if (this.localFin || this.wasReset || this.session.isClosing) {
      cb();
      return;
    }
    this.reply();
    this.localFin = true;
    this.session.data(this.id, Buffer.alloc(0), true, () => {
      cb();
      this.maybeDone();
    });
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    this.markReady({}, err ?? new Error(`SPDY stream ${this.id} closed before the peer accepted it`));
    if (!this.wasReset && !this.session.isClosing && !(this.localFin && this.remoteFin))
      this.session.rst(this.id, RstStatus.CANCEL);
    this.session.forget(this);
    cb(err);
  }

  private maybeDone(): void {
    if (this.localFin && this.remoteFin) this.session.forget(this);
  }
}
