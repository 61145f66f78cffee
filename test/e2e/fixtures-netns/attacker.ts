// The attacker's multicast side, run by Bun inside the attacker namespace with the repo's own
// transport and advert encoder: it hears the group (every datagram is reported, base64) and
// sends what it is told — verbatim bytes (replays, tampered copies) or adverts it signs
// itself with a key it holds.
// One JSON argument: { group: { address, port }, interface }.
// stdin JSON lines:
//   { "op": "send", "id": n, "b64": ["…", …], "gapMs": 50 }        send these datagrams
//   { "op": "forge", "id": n, "key": PATH, "payload": {…}, "count": 3, "gapMs": 50 }
//        sign `payload` (seq and iat filled in fresh for each one) with the key, send
//   { "op": "close" }
// stdout JSON lines: ready, recv { from, b64 }, done { id, sent }, error { message }.
import { createInterface } from 'node:readline';
import { encodeAdvert, nextSeq, type AdvertPayload } from '../../../agent/discovery/advert.ts';
import { createMulticastTransport } from '../../../agent/discovery/transport.ts';
import { readPrivateKey } from '../../../signing/index.ts';

const cfg = JSON.parse(process.argv[2] ?? '{}') as { group: { address: string; port: number }; interface: string; lifetimeMs?: number };
const out = (event: Record<string, unknown>): void => void process.stdout.write(JSON.stringify(event) + '\n');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let transport: Awaited<ReturnType<typeof createMulticastTransport>>;
try {
  transport = await createMulticastTransport({
    groups: [cfg.group],
    interface: cfg.interface,
    skipOwn: true,
    onDatagram: (data, from) => out({ event: 'recv', from: from.address, b64: data.toString('base64') }),
    onError: (err) => out({ event: 'error', message: err.message }),
  });
} catch (err) {
  out({ event: 'error', message: (err as Error).message, fatal: true });
  process.exit(1);
}
out({ event: 'ready', addresses: transport.addresses() });

let seq: number | undefined;
let queue = Promise.resolve();
const shutdown = async () => {
  await transport.close();
  process.exit(0);
};
// Bounded life: never outlives the test even if nobody closes stdin.
setTimeout(() => void shutdown(), cfg.lifetimeMs ?? 60_000).unref();
process.on('SIGTERM', () => void shutdown());

type Command =
  { op: 'send'; id: number; b64: string[]; gapMs?: number } | { op: 'forge'; id: number; key: string; payload: Omit<AdvertPayload, 'seq' | 'iat'>; count?: number; gapMs?: number } | { op: 'close' };

async function run(cmd: Command): Promise<void> {
  if (cmd.op === 'close') return shutdown();
  let sent = 0;
  if (cmd.op === 'send') {
    for (const b of cmd.b64) {
      if (sent) await sleep(cmd.gapMs ?? 50);
      await transport.send(Buffer.from(b, 'base64'));
      sent++;
    }
  } else {
    const key = readPrivateKey(cmd.key);
    for (let i = 0; i < Math.min(cmd.count ?? 1, 100); i++) {
      if (sent) await sleep(cmd.gapMs ?? 50);
      const now = Date.now();
      seq = nextSeq(seq, now);
      await transport.send(encodeAdvert({ ...cmd.payload, seq, iat: now } as AdvertPayload, key));
      sent++;
    }
  }
  out({ event: 'done', id: cmd.id, sent });
}

createInterface({ input: process.stdin }).on('line', (line) => {
  if (!line.trim()) return;
  let cmd: Command;
  try {
    cmd = JSON.parse(line) as Command;
  } catch {
    return out({ event: 'error', message: `not JSON: ${line.slice(0, 80)}` });
  }
  queue = queue.then(() => run(cmd)).catch((err: Error) => out({ event: 'error', message: err.message, id: 'id' in cmd ? cmd.id : undefined }));
});
process.stdin.on('end', () => void queue.then(shutdown));
