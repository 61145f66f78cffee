/**
 * The TLS responder (responder.ts) as its own process in the sender namespace, so the
 * simulated agents' handshakes do not compete with their adverts for one event loop (real
 * peers are separate hosts):
 *   bun bench/fleet/responder-proc.ts SPEC.json [MAX_SECONDS]
 * Prints {"event":"ready"}, then answers {"op":"responder","from":ADDRESS} with that dialer's
 * counts. Exits when stdin closes, on SIGTERM, or after MAX_SECONDS.
 */
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { startResponder } from './responder.ts';
import type { ResponderCommand, SimSpec } from './spec.ts';

const [specFile, maxSecondsArg] = process.argv.slice(2);
if (!specFile) throw new Error('usage: responder-proc.ts SPEC.json [MAX_SECONDS]');
const spec = JSON.parse(readFileSync(specFile, 'utf8')) as SimSpec;
const responder = await startResponder(spec.agents, spec.tlsKey);
const out = (v: unknown) => process.stdout.write(`${JSON.stringify(v)}\n`);

const stop = () => {
  void responder.close().finally(() => process.exit(0));
  setTimeout(() => process.exit(0), 2000).unref();
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
setTimeout(stop, Number(maxSecondsArg ?? 1800) * 1000).unref();

const lines = createInterface({ input: process.stdin });
lines.on('line', (line) => {
  if (!line.trim()) return;
  const cmd = JSON.parse(line) as ResponderCommand & { id: number };
  out(cmd.op === 'responder' ? { ...responder.stats(cmd.from), id: cmd.id } : { id: cmd.id, error: `the responder answers "responder" only, not ${String(cmd.op)}` });
});
lines.on('close', stop);
out({ event: 'ready', at: Date.now() });
