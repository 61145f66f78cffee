/**
 * Advertisement verification throughput (not a vitest file: run it under Bun, as the agent runs):
 *   CBOR_NATIVE_ACCELERATION_DISABLED=true ./node_modules/.bin/bun bench/discovery-verify.ts
 * Prints verifies/s for valid adverts (trusted key; endorsed key), forged signatures, unknown
 * keys, wrong fleet and junk. Issue 5's target: ≥ 10,000 valid verifies/s.
 */
import { createPublicKey, randomBytes, verify as edVerify } from 'node:crypto';
import { decodeCanonical, encodeCanonical, formatPublicKey, generateKeyPair } from '../signing/index.ts';
import { encodeAdvert, type AdvertPayload } from '../agent/discovery/advert.ts';
import { endorse } from '../agent/discovery/endorse.ts';
import { createAdvertVerifier, type AdvertVerifier } from '../agent/discovery/verifier.ts';

const N = Number(process.env.N ?? 20_000);
const ROUNDS = Number(process.env.ROUNDS ?? 5);
const NOW = 1_800_000_000_000;
const agent = generateKeyPair();
const endorsedAgent = generateKeyPair();
const root = generateKeyPair();
const stranger = generateKeyPair();
const endorsement = endorse({ root, agentPublicKey: endorsedAgent.publicKey, spiffeId: 'spiffe://skein.local/agent/e1', notAfter: NOW + 86_400_000 });

const base = (seq: number, agentName: string, spiffe: string): AdvertPayload => ({
  v: 1,
  fleet: 'prod',
  agent: agentName,
  spiffe,
  endpoints: ['10.0.0.5:7443', '[fd00::5]:7443'],
  routines: ['echo', 'resize_image', 'score.v2', 'ingest'],
  load: 3,
  capacity: 8,
  tlsFingerprint: randomBytes(32).toString('hex'),
  seq,
  iat: NOW,
  ttl: 6000,
});

function adverts(kind: 'trusted' | 'endorsed' | 'forged' | 'unknown' | 'wrong-fleet' | 'junk'): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (let i = 1; i <= N; i++) {
    if (kind === 'junk') {
      out.push(randomBytes(200 + (i % 800)));
      continue;
    }
    if (kind === 'endorsed') {
      out.push(encodeAdvert(base(i, 'e1', 'spiffe://skein.local/agent/e1'), endorsedAgent, endorsement));
      continue;
    }
    const p = base(i, 'a1', 'spiffe://skein.local/agent/a1');
    if (kind === 'wrong-fleet') p.fleet = 'other';
    const b = Buffer.from(encodeAdvert(p, kind === 'unknown' ? stranger : agent));
    if (kind === 'forged') b[b.length - 5]! ^= 0x55; // inside the signature
    out.push(b);
  }
  return out;
}

function verifier(): AdvertVerifier {
  return createAdvertVerifier({
    fleet: 'prod',
    trustedKeys: [formatPublicKey(agent.publicKey)],
    rootKeys: [formatPublicKey(root.publicKey)],
    now: () => NOW,
    perSourceRate: null,
  });
}

function report(label: string, rates: number[], data: Uint8Array[]): void {
  rates.sort((a, b) => a - b);

  const median = rates[Math.floor(rates.length / 2)]!;
  const size = Math.round(data.reduce((s, d) => s + d.length, 0) / data.length);
  console.log(`${label.padEnd(40)} ${Math.round(median).toLocaleString('en-US').padStart(9)} /s  (median of ${ROUNDS}; ${size} B avg; min ${Math.round(rates[0]!)} max ${Math.round(rates.at(-1)!)})`);
}

function run(label: string, data: Uint8Array[], expect: string): void {
  const rates: number[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    const v = verifier();
    const t0 = performance.now();
    for (let i = 0; i < data.length; i++) v.verify(data[i]!, '10.0.0.9');
    const ms = performance.now() - t0;
    const c = v.counters();
    const got = expect === 'rejected' ? data.length - c.accepted : c[expect as keyof typeof c];
    if (got !== data.length) throw new Error(`${label}: expected ${data.length} × ${expect}, got ${JSON.stringify(c)}`);
    rates.push((data.length / ms) * 1000);
  }
  report(label, rates, data);
}

/** The raw ceiling, same adverts: one node:crypto verify of each signature, nothing else. */
function raw(label: string, data: Uint8Array[]): void {
  const key = createPublicKey({ key: Buffer.concat([Buffer.from('302a300506032b6570032100', 'hex'), agent.publicKey]), format: 'der', type: 'spki' });
  const parts = data.map((d) => {
    const env = (decodeCanonical(d) as unknown[])[2] as Uint8Array;
    const [, ctx, id, payload, sig] = decodeCanonical(env) as [number, string, string, Uint8Array, Uint8Array];
    return { signed: encodeCanonical([ctx, id, payload]), sig };
  });
  const rates: number[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    const t0 = performance.now();
    for (const p of parts) if (!edVerify(null, p.signed, key, p.sig)) throw new Error('raw verify failed');
    rates.push((parts.length / (performance.now() - t0)) * 1000);
  }
  report(label, rates, data);
}

console.log(`runtime: ${typeof Bun !== 'undefined' ? `bun ${Bun.version}` : `node ${process.version}`}, ${N} adverts per round`);
const trusted = adverts('trusted');
raw('raw node:crypto verify (baseline)', trusted);
run('valid, trusted key', trusted, 'accepted');
raw('raw node:crypto verify (baseline, again)', trusted);
run('valid, endorsed key', adverts('endorsed'), 'accepted');
run('forged signature (bad-signature)', adverts('forged'), 'bad-signature');
run('untrusted key (unknown-key)', adverts('unknown'), 'unknown-key');
run('wrong fleet', adverts('wrong-fleet'), 'wrong-fleet');
run('random junk (malformed etc.)', adverts('junk'), 'rejected');
