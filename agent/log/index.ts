/**
 * Structured logger. One line per event on stderr (stdout is reserved for command output):
 * JSON lines by default so fleets can ship them, or `text` for a human at a terminal.
 * Child loggers bind fields (requestId, peer, worker) so every line of a request carries them.
 *
 * @example
 *   const log = createLogger({ level: 'info' }).child({ requestId });
 *   log.warn('worker stderr', { worker: 'w1', line });
 */
import type { Reloadable } from '../lifecycle/reloadable.ts';

export const LOG_LEVELS = ['debug', 'info', 'warn', 'error'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];
export type LogFormat = 'json' | 'text';
export type Fields = Record<string, unknown>;

const RANK: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export interface Logger {
  debug(msg: string, fields?: Fields): void;
  info(msg: string, fields?: Fields): void;
  warn(msg: string, fields?: Fields): void;
  error(msg: string, fields?: Fields): void;
  enabled(level: LogLevel): boolean;
  child(fields: Fields): Logger;
  /** Changes the minimum level of this logger and every child of it (config reload). */
  setLevel?(level: LogLevel): void;
}

export interface LoggerOptions {
  level?: LogLevel;
  format?: LogFormat;
  /** Where lines go; defaults to stderr. Injected by tests. */
  write?: (line: string) => void;
  now?: () => Date;
}

export function createLogger(options: LoggerOptions = {}): Logger {
  let min = RANK[options.level ?? 'info'];
  const format = options.format ?? 'json';
  const write = options.write ?? ((line: string) => process.stderr.write(line));
  const now = options.now ?? (() => new Date());

  const make = (bound: Fields): Logger => {
    const emit = (level: LogLevel, msg: string, fields?: Fields) => {
      if (RANK[level] < min) return;
      const record = { ts: now().toISOString(), level, msg, ...bound, ...fields };
      write(format === 'json' ? `${safeStringify(record)}\n` : `${formatText(record)}\n`);
    };
    return {
      debug: (m, f) => emit('debug', m, f),
      info: (m, f) => emit('info', m, f),
      warn: (m, f) => emit('warn', m, f),
      error: (m, f) => emit('error', m, f),
      enabled: (level) => RANK[level] >= min,
      child: (fields) => make({ ...bound, ...fields }),
      setLevel: (level) => {
        min = RANK[level];
      },
    };
  };
  return make({});
}

function formatText(record: Fields): string {
  const { ts, level, msg, ...rest } = record;
  const tail = Object.entries(rest)
    .map(([k, v]) => `${k}=${typeof v === 'string' ? printable(v) : safeStringify(v)}`)
    .join(' ');
  return `${String(ts).slice(11, 23)} ${String(level).toUpperCase().padEnd(5)} ${printable(String(msg))}${tail ? `  ${tail}` : ''}`;
}

// Control characters (newlines, CR, ANSI escapes) in a value - e.g. a worker's stderr - are
// escaped, so one event stays one line and cannot forge or repaint lines on a terminal.
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;
function printable(s: string): string {
  return CONTROL.test(s) ? JSON.stringify(s).slice(1, -1) : s;
}

function safeStringify(value: unknown): string {
  try {
    return JSON.stringify(value, (_k, v) => (v instanceof Error ? { name: v.name, message: v.message } : typeof v === 'bigint' ? String(v) : v));
  } catch {
    return '"[unserialisable]"';
  }
}

/** The log level applies live (agent/lifecycle/reloadable.ts): a reload that changes log.level sets it at once. */
export function liveLogLevel(log: Logger): Reloadable<{ log: { level: LogLevel } }> {
  return {
    name: 'log',
    reloadKeys: ['log.level'],
    stage: (next, changed) => (changed.length ? { commit: () => log.setLevel?.(next.log.level) } : undefined),
  };
}
