/**
 * Driving a child that speaks JSON lines (the simulator, a probe): commands carry an id, the
 * answer with that id resolves the call. Every call is bounded by a deadline.
 */
import type { ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';

export interface Controlled {
  proc: ChildProcess;
  /** Sends `cmd` and waits (at most timeoutMs) for its answer. */
  call<T = Record<string, unknown>>(cmd: Record<string, unknown>, timeoutMs: number): Promise<T>;
  /** Waits for the first line with event === name. */
  event(name: string, timeoutMs: number): Promise<Record<string, unknown>>;
}

export function controlled(proc: ChildProcess, what: string, stderrTail: () => string = () => ''): Controlled {
  let seq = 0;
  const waiting = new Map<number, (v: Record<string, unknown>) => void>();
  const events: Array<Record<string, unknown>> = [];
  const eventWaiters = new Set<() => void>();
  createInterface({ input: proc.stdout! }).on('line', (line) => {
    let v: Record<string, unknown>;
    try {
      v = JSON.parse(line) as Record<string, unknown>;
    } catch {
      return;
    }
    if (typeof v.id === 'number') waiting.get(v.id)?.(v);
    else {
      events.push(v);
      for (const w of eventWaiters) w();
    }
  });
  const gone = () => proc.exitCode !== null || proc.signalCode !== null;
  return {
    proc,
    call<T>(cmd: Record<string, unknown>, timeoutMs: number): Promise<T> {
      const id = ++seq;
      return new Promise<T>((resolve, reject) => {
        const timer = setTimeout(() => {
          waiting.delete(id);
          reject(new Error(`${what}: no answer to ${JSON.stringify(cmd)} within ${timeoutMs} ms ${stderrTail()}`));
        }, timeoutMs);
        waiting.set(id, (v) => {
          clearTimeout(timer);
          waiting.delete(id);
          const { id: _id, ...answer } = v;
          if (typeof answer.error === 'string') reject(new Error(`${what}: ${answer.error}`));
          else resolve(answer as T);
        });
        proc.stdin!.write(`${JSON.stringify({ ...cmd, id })}\n`);
      });
    },
    event(name, timeoutMs) {
      return new Promise((resolve, reject) => {
        const check = () => {
          const e = events.find((x) => x.event === name);
          if (e) {
            done();
            resolve(e);
          } else if (gone()) {
            done();
            reject(new Error(`${what} exited (${proc.exitCode ?? proc.signalCode}) before "${name}" ${stderrTail()}`));
          }
        };
        const timer = setTimeout(() => {
          done();
          reject(new Error(`${what}: no "${name}" within ${timeoutMs} ms ${stderrTail()}`));
        }, timeoutMs);
        const poll = setInterval(check, 100);
        const done = () => {
          clearTimeout(timer);
          clearInterval(poll);
          eventWaiters.delete(check);
        };
        eventWaiters.add(check);
        check();
      });
    },
  };
}
