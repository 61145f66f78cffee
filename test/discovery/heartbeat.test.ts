/**
 * Wire version 2 (agent/discovery/heartbeat.ts): records and heartbeats through the verifier
 * and the peer table, and the budgeted advert interval (advertiser.ts).
 */
import { describe, expect, it } from 'vitest';
import { ADVERT_CONTEXT, encodeAdvert } from '../../agent/discovery/advert.ts';
import { advertInterval } from '../../agent/discovery/advertiser.ts';
import { endorse } from '../../agent/discovery/endorse.ts';
import { encodeHeartbeat, recordDigest, type HeartbeatPayload } from '../../agent/discovery/heartbeat.ts';
import { PeerTable } from '../../agent/discovery/peers.ts';
import { createAdvertVerifier } from '../../agent/discovery/verifier.ts';
import { encodeCanonical, formatPublicKey, generateKeyPair, sign } from '../../signing/index.ts';
import { FLEET, NOW, expectAccepted, expectRejected, payload, testClock } from './helpers.ts';

const root = generateKeyPair();
const key = generateKeyPair();
const direct = generateKeyPair();
const SPIFFE = 'spiffe://skein.local/agent/h1';
const endorsement = endorse({ root, agentPublicKey: key.publicKey, spiffeId: SPIFFE, notAfter: NOW + 60_000 });
const record = (over = {}) => payload({ v: 2, agent: 'h1', spiffe: SPIFFE, ...over });
const hb = (over: Partial<HeartbeatPayload> = {}): HeartbeatPayload => ({ v: 2, fleet: FLEET, agent: 'h1', rd: recordDigest(record()), load: 2, seq: 2, iat: NOW, ttl: 6000, ...over });

function setup() {
  const clock = testClock();
  const v = createAdvertVerifier({ fleet: FLEET, trustedKeys: [formatPublicKey(direct.publicKey)], rootKeys: [formatPublicKey(root.publicKey)], now: clock.now, perSourceRate: null });
  return { v, clock };
}

describe('wire version 2 through the verifier', () => {
  it('a heartbeat of an endorsed key is checked with the endorsement its record carried; expiry still applies', () => {
    const { v, clock } = setup();
    // Before any record of that key: nothing vouches for it.
    expectRejected(v, encodeHeartbeat(hb({ seq: 1 }), key), 'unknown-key');
    const r = expectAccepted(v, encodeAdvert(record({ seq: 2, want: [] }), key, endorsement));
    expect(r.payload).toMatchObject({ v: 2, want: [] });
    const h = expectAccepted(v, encodeHeartbeat(hb({ seq: 3 }), key));
    expect(h).toMatchObject({ keyId: key.keyId, endorsed: true, payload: { rd: recordDigest(record()), load: 2 } });
    // One sequence space for records and heartbeats: a repeat or an older one is a replay.
    expectRejected(v, encodeHeartbeat(hb({ seq: 3 }), key), 'replay');
    expectRejected(v, encodeAdvert(record({ seq: 3 }), key, endorsement), 'replay');
    clock.advance(61_000);
    expectRejected(v, encodeHeartbeat(hb({ seq: 9, iat: clock.now() }), key), 'endorsement-expired');
  });

  it('a directly trusted key needs no record first; wrong fleet, stale and forged heartbeats are refused', () => {
    const { v, clock } = setup();
    expectAccepted(v, encodeHeartbeat(hb({ seq: 1 }), direct));
    expectRejected(v, encodeHeartbeat(hb({ seq: 2, fleet: 'other' }), direct), 'wrong-fleet');
    const forged = Buffer.from(encodeHeartbeat(hb({ seq: 3 }), direct));
    forged[forged.length - 3]! ^= 1;
    expectRejected(v, forged, 'bad-signature');
    clock.advance(40_000);
    expectRejected(v, encodeHeartbeat(hb({ seq: 4 }), direct), 'stale');
  });

  it('versions do not mix: a version 2 payload in a version 1 frame, or a version 1 signature in a version 2 frame, is malformed', () => {
    const { v } = setup();
    const v2InV1 = encodeCanonical([1, FLEET, sign(record({ seq: 5 }), direct, ADVERT_CONTEXT), null]);
    expect(expectRejected(v, v2InV1, 'malformed').detail).toMatch(/payload version 2 .* version 1 frame/);
    const v1InV2 = encodeCanonical([2, FLEET, sign(payload({ seq: 6 }), direct, ADVERT_CONTEXT), null]);
    expect(expectRejected(v, v1InV2, 'malformed').detail).toMatch(/another context/);
    // Version 1 adverts of older agents are still believed.
    expectAccepted(v, encodeAdvert(payload({ seq: 7 }), direct));
  });

  it('want holds at most 32 distinct key ids, and only in version 2', () => {
    expect(() => encodeAdvert(record({ want: Array.from({ length: 33 }, (_, i) => i.toString(16).padStart(16, '0')) }), key)).toThrow(/want must be an array of at most 32/);
    expect(() => encodeAdvert(record({ want: ['zz'] }), key)).toThrow(/key id/);
    expect(() => encodeAdvert(payload({ want: [] }), key)).toThrow(/want is a version 2 field/);
  });
});

describe('heartbeats in the peer table', () => {
  it('refresh the entry of the same key whose record they name; anything else is unknown or ignored, never created', () => {
    const clock = testClock();
    const t = new PeerTable({ now: clock.now });
    expect(t.heartbeat(hb(), key.keyId, '10.0.0.1')).toBe('unknown');
    expect(t.size).toBe(0);
    t.upsert(record({ seq: 1 }), key.keyId, '10.0.0.1');
    clock.advance(5000);
    expect(t.heartbeat(hb({ seq: 2, load: 7 }), key.keyId, '10.0.0.2')).toBe('refreshed');
    expect(t.get('h1')).toMatchObject({ load: 7, seq: 2, source: '10.0.0.2', expiresInMs: 6000 });
    expect(t.heartbeat(hb({ seq: 3 }), direct.keyId, '10.0.0.1')).toBe('ignored');
    expect(t.heartbeat(hb({ seq: 2 }), key.keyId, '10.0.0.1')).toBe('ignored');
    // The record changed and this table missed it: ask for it.
    expect(t.heartbeat(hb({ seq: 4, rd: recordDigest(record({ routines: ['other'] })) }), key.keyId, '10.0.0.1')).toBe('unknown');
    clock.advance(6000);
    expect(t.heartbeat(hb({ seq: 5 }), key.keyId, '10.0.0.1')).toBe('unknown');
    expect(t.list()).toEqual([]);
  });

  it('leave the record object as it arrived while the entry moves on', () => {
    const clock = testClock();
    const t = new PeerTable({ now: clock.now });
    const rec = record({ seq: 1, load: 0 });
    t.upsert(rec, key.keyId, '10.0.0.1');
    expect(t.heartbeat(hb({ seq: 2, load: 7 }), key.keyId, '10.0.0.1')).toBe('refreshed');
    expect(rec).toMatchObject({ seq: 1, load: 0 });
    expect(t.get('h1')).toMatchObject({ seq: 2, load: 7 });
    // The record's own sequence number no longer counts: the heartbeat's does.
    expect(t.upsert(record({ seq: 2 }), key.keyId, '10.0.0.1')).toBe('ignored');
    expect(t.upsert(record({ seq: 3, load: 1 }), key.keyId, '10.0.0.1')).toBe('updated');
    expect(t.get('h1')).toMatchObject({ seq: 3, load: 1 });
  });
});

describe('records in the peer table', () => {
  it('a resent identical record refreshes the entry (sequence, load, source, expiry); a changed one replaces it', () => {
    const clock = testClock();
    const t = new PeerTable({ now: clock.now });
    t.upsert(record({ seq: 1, load: 0 }), key.keyId, '10.0.0.1');
    const [held] = t.list();
    clock.advance(4000);
    expect(t.upsert(record({ seq: 2, load: 3 }), key.keyId, '10.0.0.2')).toBe('updated');
    expect(t.get('h1')).toMatchObject({ seq: 2, load: 3, source: '10.0.0.2', ageMs: 0, expiresInMs: 6000, routines: held!.routines });
    expect(t.upsert(record({ seq: 3, routines: ['other'] }), key.keyId, '10.0.0.2')).toBe('updated');
    expect(t.get('h1')).toMatchObject({ seq: 3, routines: ['other'] });
  });

  it('routine names come back as advertised when entries share them', () => {
    const t = new PeerTable({ now: testClock().now });
    // Strings built at run time, so the two records' names are distinct objects, as decoded ones are.
    const names = (n: number) => ['echo', 'resize'].map((r) => `${r}${'!'.repeat(n)}`.slice(0, r.length));
    t.upsert(record({ agent: 'x1', spiffe: 'spiffe://skein.local/agent/x1', routines: names(1) }), 'k000000000000001', '10.0.0.1');
    t.upsert(record({ agent: 'x2', spiffe: 'spiffe://skein.local/agent/x2', routines: names(2) }), 'k000000000000002', '10.0.0.2');
    const [a, b] = t.list();
    expect(a!.routines).toEqual(['echo', 'resize']);
    expect(b!.routines).toEqual(a!.routines);
  });
});

describe('the advert interval within the fleet budget', () => {
  const base = { minMs: 2000, ttlMs: 10_000, bytes: 203, budget: 64_000 };
  it('small fleets advertise every intervalMs; larger ones stretch to keep the total at the budget; never past ttlMs / 3', () => {
    expect(advertInterval({ ...base, peers: 10 })).toBe(2000);
    const at1000 = advertInterval({ ...base, peers: 999 });
    expect(at1000).toBeCloseTo((1000 * 203 * 1000) / 64_000, 5);
    // What 1,000 agents send each host: the budget, under the 100 kB/s.
    expect((1000 * 203 * 1000) / at1000).toBeCloseTo(64_000, 5);
    expect(advertInterval({ ...base, peers: 4999 })).toBeCloseTo(10_000 / 3, 5);
    for (let peers = 0; peers < 20_000; peers += 97) {
      const i = advertInterval({ ...base, peers });
      expect(i).toBeGreaterThanOrEqual(Math.min(2000, 10_000 / 3));
      expect(i).toBeLessThanOrEqual(10_000 / 3);
    }
  });
});
