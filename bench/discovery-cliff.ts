/**
 * Cost per advert as the fleet grows (issue 14, "a cost cliff past ~1,000 peers"); run under Bun:
 *   CBOR_NATIVE_ACCELERATION_DISABLED=true ./node_modules/.bin/bun bench/discovery-cliff.ts
 * N endorsed peers (each its own key, endorsement and source address) advertise round robin,
 * as a segment delivers them; prints µs per verified advert for each N. Cost per advert must
 * stay flat as N grows: no step past any cache size.
 */
import { formatPublicKey, generateKeyPair, type KeyPair } from '../signing/index.ts';
import { encodeAdvert } from '../agent/discovery/advert.ts';
import { endorse } from '../agent/discovery/endorse.ts';
import { createAdvertVerifier } from '../agent/discovery/verifier.ts';

const NOW = 1_800_000_000_000;
const ROUNDS = Number(process.env.ROUNDS ?? 3);
const root = generateKeyPair();
const sizes = (process.env.PEERS ?? '500,1000,1500,2000,4000').split(',').map(Number);
const max = Math.max(...sizes);
const peers: Array<{ key: KeyPair; endorsement: Uint8Array; name: string }> = [];
for (let i = 0; i < max; i++) {
  const key = generateKeyPair();
  const name = `p${i}`;
  peers.push({ key, name, endorsement: endorse({ root, agentPublicKey: key.publicKey, spiffeId: `spiffe://skein.local/agent/${name}`, notAfter: NOW + 86_400_000 }) });
}

for (const n of sizes) {
  const data: Uint8Array[] = [];
  for (let round = 1; round <= ROUNDS + 1; round++) {
    for (let i = 0; i < n; i++) {
      const p = peers[i]!;
      data.push(
        encodeAdvert(
          {
            v: 1,
            fleet: 'prod',
            agent: p.name,
            spiffe: `spiffe://skein.local/agent/${p.name}`,
            endpoints: [`10.1.${i >> 8}.${i & 255}:7443`],
            routines: ['echo', 'resize'],
            load: 0,
            capacity: 4,
            tlsFingerprint: 'ab'.repeat(32),
            seq: round,
            iat: NOW,
            ttl: 6000,
          },
          p.key,
          p.endorsement,
        ),
      );
    }
  }
  const v = createAdvertVerifier({ fleet: 'prod', rootKeys: [formatPublicKey(root.publicKey)], now: () => NOW, perSourceRate: null });
  // The first round meets every endorsement once (a verify each, unavoidable); the steady state is what follows.
  for (let i = 0; i < n; i++) v.verify(data[i]!, `10.1.${i >> 8}.${i & 255}`);
  const t0 = performance.now();
  for (let i = n; i < data.length; i++) v.verify(data[i]!, `10.1.${(i % n) >> 8}.${(i % n) & 255}`);
  const us = ((performance.now() - t0) * 1000) / (data.length - n);
  console.log(`${String(n).padStart(5)} peers: ${us.toFixed(1)} µs per advert (accepted ${v.counters().accepted} of ${data.length})`);
}
