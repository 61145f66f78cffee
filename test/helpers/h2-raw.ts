/**
 * A raw HTTP/2 frame client for flood tests: it writes frames no library client would send
 * (PING and SETTINGS floods, endless CONTINUATION, HEADERS beyond the stream limit) and
 * records every frame the agent sends back, so a test can see GOAWAY and RST_STREAM codes
 * exactly. Over TLS (ALPN h2, the test client certificate) or plaintext h2c.
 */
import net from 'node:net';
import tls from 'node:tls';
import { readFileSync } from 'node:fs';
import type { Creds } from './h2.ts';

export const FRAME = { DATA: 0, HEADERS: 1, RST_STREAM: 3, SETTINGS: 4, PING: 6, GOAWAY: 7, WINDOW_UPDATE: 8, CONTINUATION: 9 } as const;
export const FLAG = { END_STREAM: 1, ACK: 1, END_HEADERS: 4 } as const;
const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');

export interface Frame {
  type: number;
  flags: number;
  stream: number;
  payload: Buffer;
}

export function frame(type: number, flags: number, stream: number, payload: Buffer = Buffer.alloc(0)): Buffer {
  const head = Buffer.alloc(9);
  head.writeUIntBE(payload.length, 0, 3);
  head[3] = type;
  head[4] = flags;
  head.writeUInt32BE(stream, 5);
  return Buffer.concat([head, payload]);
}

/** HPACK integer with an n-bit prefix (RFC 7541 §5.1). */
function hpackInt(value: number, prefixBits: number, first = 0): number[] {
  const max = (1 << prefixBits) - 1;
  if (value < max) return [first | value];
  const out = [first | max];
  let rest = value - max;
  while (rest >= 128) {
    out.push((rest & 127) | 128);
    rest >>= 7;
  }
  out.push(rest);
  return out;
}

/** A header block of literals without indexing and without Huffman: simple and stateless. */
export function hpack(headers: Array<[string, string]>): Buffer {
  const parts: Buffer[] = [];
  for (const [name, value] of headers) {
    parts.push(Buffer.from([0]), Buffer.from(hpackInt(name.length, 7)), Buffer.from(name), Buffer.from(hpackInt(Buffer.byteLength(value), 7)), Buffer.from(value));
  }
  return Buffer.concat(parts);
}

/** Resolves true once `sock` closes, false after `ms` (the agent did not close it). */
export function closedWithin(sock: { once(event: 'close', cb: () => void): unknown }, ms: number): Promise<boolean> {
  return new Promise<boolean>((resolve) => {
    const timer = setTimeout(() => resolve(false), ms);
    sock.once('close', () => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}

export const ping = (n = 0) => frame(FRAME.PING, 0, 0, Buffer.alloc(8, n & 0xff));
export const settings = () => frame(FRAME.SETTINGS, 0, 0);
export const rst = (stream: number, code: number) => {
  const p = Buffer.alloc(4);
  p.writeUInt32BE(code);
  return frame(FRAME.RST_STREAM, 0, stream, p);
};

/** Request headers for POST /v1/dispatch/<routine>. */
export function dispatchHeaders(routine: string, scheme: 'https' | 'http' = 'https'): Buffer {
  return hpack([
    [':method', 'POST'],
    [':scheme', scheme],
    [':path', `/v1/dispatch/${routine}`],
    [':authority', '127.0.0.1'],
    ['content-type', 'application/json'],
  ]);
}

export interface RawSession {
  /** Frames received so far, in order. */
  frames: Frame[];
  /** Writes bytes; resolves once the socket can take more (bounded memory in flood loops). */
  send(bytes: Buffer): Promise<void>;
  /** True once the agent closed (or reset) the connection. */
  readonly closed: boolean;
  /** Resolves when the connection closes, or with false after `timeoutMs`. */
  waitClosed(timeoutMs: number): Promise<boolean>;
  /** The first GOAWAY's error code, if one arrived. */
  goawayCode(): number | undefined;
  destroy(): void;
}

/** Opens a connection, sends the client preface and an empty SETTINGS frame. */
export function rawConnect(port: number, opts: { creds?: Creds; plaintext?: boolean }): Promise<RawSession> {
  return new Promise((resolve, reject) => {
    const socket = opts.plaintext
      ? net.connect(port, '127.0.0.1')
      : tls.connect({
          host: '127.0.0.1',
          port,
          ALPNProtocols: ['h2'],
          ...(opts.creds ? { cert: readFileSync(opts.creds.cert), key: readFileSync(opts.creds.key), ca: readFileSync(opts.creds.ca) } : { rejectUnauthorized: false }),
        });
    const frames: Frame[] = [];
    let buf = Buffer.alloc(0);
    let closed = false;
    const closeWaiters = new Set<() => void>();
    socket.on('data', (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      while (buf.length >= 9) {
        const len = buf.readUIntBE(0, 3);
        if (buf.length < 9 + len) break;
        frames.push({ type: buf[3]!, flags: buf[4]!, stream: buf.readUInt32BE(5) & 0x7fffffff, payload: Buffer.from(buf.subarray(9, 9 + len)) });
        buf = buf.subarray(9 + len);
      }
    });
    // Resets and broken pipes are how a flooding client learns it was cut off.
    socket.on('error', () => {});
    socket.on('close', () => {
      closed = true;
      for (const w of closeWaiters) w();
    });
    const session: RawSession = {
      frames,
      send(bytes) {
        if (closed || socket.destroyed) return Promise.resolve();
        if (socket.write(bytes)) return Promise.resolve();
        return new Promise((r) => {
          const done = () => {
            socket.off('drain', done);
            closeWaiters.delete(done);
            r();
          };
          socket.once('drain', done);
          closeWaiters.add(done);
        });
      },
      get closed() {
        return closed;
      },
      waitClosed(timeoutMs) {
        if (closed) return Promise.resolve(true);
        return new Promise((r) => {
          const timer = setTimeout(() => {
            closeWaiters.delete(done);
            r(false);
          }, timeoutMs);
          const done = () => {
            clearTimeout(timer);
            r(true);
          };
          closeWaiters.add(done);
        });
      },
      goawayCode() {
        const g = frames.find((f) => f.type === FRAME.GOAWAY);
        return g ? g.payload.readUInt32BE(4) : undefined;
      },
      destroy() {
        socket.destroy();
      },
    };
    const ready = () => {
      socket.off('error', reject);
      socket.write(Buffer.concat([PREFACE, settings()]));
      resolve(session);
    };
    socket.once('error', reject);
    socket.once(opts.plaintext ? 'connect' : 'secureConnect', ready);
  });
}
