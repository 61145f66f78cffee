/**
 * sd_notify(3) for Type=notify units: READY=1 once the agent serves, STOPPING=1 when it starts
 * draining, STATUS= lines in between. systemd listens on the AF_UNIX datagram socket named by
 * $NOTIFY_SOCKET; node:dgram has no unix datagram sockets, so this calls libc through Bun's FFI,
 * loaded only when the variable is set (never in tests on Node, never outside systemd).
 */
import type { Logger } from '../log/index.ts';
import { released, type Component } from '../lifecycle/index.ts';

/** close() and destroy() (agent/lifecycle) both release the socket, once; send() after them does nothing. */
export interface Notifier extends Component {
  /** Sends "KEY=value" lines; failures are logged once, never thrown (the agent must not die of it). */
  send(fields: Record<string, string | number>): void;
}

const NOOP: Notifier = { send() {}, close: () => Promise.resolve(), destroy: () => Promise.resolve() };
const AF_UNIX = 1;
const SOCK_DGRAM = 2;
const SOCK_CLOEXEC = 0o2000000;

/** A notifier for $NOTIFY_SOCKET, or one that does nothing when the agent is not run by systemd. */
export async function systemdNotifier(env: NodeJS.ProcessEnv, log: Logger): Promise<Notifier> {
  const path = env.NOTIFY_SOCKET;
  if (!path) return NOOP;
  // Abstract socket names start with "@", sent as a leading NUL; a path must be absolute.
  if (!path.startsWith('@') && !path.startsWith('/')) {
    log.warn('NOTIFY_SOCKET is neither an absolute path nor an abstract name; not notifying systemd', { NOTIFY_SOCKET: path });
    return NOOP;
  }
  const name = Buffer.from(path.startsWith('@') ? `\0${path.slice(1)}` : `${path}\0`);
  if (name.length > 108) {
    log.warn('NOTIFY_SOCKET path is too long for a unix socket address; not notifying systemd', { NOTIFY_SOCKET: path });
    return NOOP;
  }
  const { dlopen, FFIType, ptr } = await import('bun:ffi');
  const libc = dlopen('libc.so.6', {
    socket: { args: [FFIType.i32, FFIType.i32, FFIType.i32], returns: FFIType.i32 },
    sendto: { args: [FFIType.i32, FFIType.ptr, FFIType.u64, FFIType.i32, FFIType.ptr, FFIType.u32], returns: FFIType.i64 },
    close: { args: [FFIType.i32], returns: FFIType.i32 },
  });
  // struct sockaddr_un: sa_family_t (native byte order) then sun_path.
  const addr = Buffer.alloc(2 + name.length);
  addr.writeUInt16LE(AF_UNIX, 0);
  if (new Uint8Array(new Uint16Array([1]).buffer)[0] !== 1) addr.writeUInt16BE(AF_UNIX, 0);
  name.copy(addr, 2);
  let warned = false;
  const fd = libc.symbols.socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    log.warn('cannot create a socket to notify systemd', {});
    libc.close();
    return NOOP;
  }
  const life = released(() => {
    libc.symbols.close(fd);
    libc.close();
  });
  return {
    send(fields) {
      if (life.closed) return;
      const text = Buffer.from(
        Object.entries(fields)
          .map(([k, v]) => `${k}=${String(v).replace(/\n/g, ' ')}`)
          .join('\n'),
      );
      const sent = Number(libc.symbols.sendto(fd, ptr(text), text.length, 0, ptr(addr), addr.length));
      if (sent !== text.length && !warned) {
        warned = true;
        log.warn('could not notify systemd (sendto failed); Type=notify units will time out waiting for READY=1', { NOTIFY_SOCKET: path });
      }
    },
    close: () => life.close(),
    destroy: (reason) => life.destroy(reason),
  };
}
