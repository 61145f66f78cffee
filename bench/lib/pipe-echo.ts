/**
 * The Python pipe echo: a Python process that echoes JSON lines over a pipe, with no network,
 * no sandbox and no agent: what the worker hop alone costs. Calls are matched to replies by
 * id, so many can be in flight (pipelined) on the one pipe.
 */
import type { ChildProcess } from 'node:child_process';
import type { Procs } from './procs.ts';
import { PAYLOAD, type Call } from './workload.ts';

const ECHO = [
  'import sys, json, os',
  'print(json.dumps({"ready": True}), flush=True)',
  'out = sys.stdout.buffer',
  'for line in sys.stdin.buffer:',
  '    m = json.loads(line)',
  '    out.write((json.dumps({"id": m["id"], "ok": m["a"][0]}, separators=(",", ":")) + "\\n").encode())',
  '    out.flush()',
].join('\n');

export interface PipeEcho {
  call: Call;
  proc: ChildProcess;
}

export async function startPipeEcho(procs: Procs, python = 'python3'): Promise<PipeEcho> {
  const { proc } = await procs.start(python, ['-I', '-S', '-u', '-c', ECHO], /"ready": true/, { stream: 'stdout', stdin: true });
  const waiting = new Map<number, (v: unknown) => void>();
  let next = 1;
  let buf = '';
  proc.stdout!.setEncoding('utf8');
  proc.stdout!.on('data', (d: string) => {
    buf += d;
    let nl: number;
    while ((nl = buf.indexOf('\n')) !== -1) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      if (!line.startsWith('{"id"')) continue;
      const m = JSON.parse(line) as { id: number; ok: unknown };
      waiting.get(m.id)?.(m.ok);
      waiting.delete(m.id);
    }
  });
  const call: Call = () =>
    new Promise((resolve) => {
      const id = next++;
      waiting.set(id, resolve);
      proc.stdin!.write(`{"id":${id},"a":[${JSON.stringify(PAYLOAD)}]}\n`);
    });
  return { call, proc };
}
