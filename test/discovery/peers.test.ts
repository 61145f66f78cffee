import { describe, expect, it } from 'vitest';
import { PeerTable } from '../../agent/discovery/peers.ts';
import { NOW, payload, testClock } from './helpers.ts';

const KEY_A = 'aaaaaaaaaaaaaaaa';
const KEY_B = 'bbbbbbbbbbbbbbbb';

function table() {
  const clock = testClock();
  return { peers: new PeerTable({ now: clock.now }), clock };
}

describe('peer table', () => {
  it('upsert adds and updates; list shows identity, endpoints, routines, load, age and expiry', () => {
    const { peers, clock } = table();
    expect(peers.upsert(payload({ seq: 1 }), KEY_A, '127.0.0.1')).toBe('added');
    clock.advance(1500);
    expect(peers.list()).toEqual([
      {
        agent: 'a1',
        spiffe: 'spiffe://skein.local/agent/a1',
        keyId: KEY_A,
        endpoints: ['127.0.0.1:7443', '[::1]:7443'],
        routines: ['echo', 'resize'],
        load: 1,
        capacity: 4,
        tlsFingerprint: 'ab'.repeat(32),
        seq: 1,
        source: '127.0.0.1',
        ageMs: 1500,
        expiresInMs: 4500,
        coolDownMs: 0,
      },
    ]);
    expect(peers.upsert(payload({ seq: 2, load: 3 }), KEY_A, '127.0.0.1')).toBe('updated');
    expect(peers.get('a1')).toMatchObject({ load: 3, ageMs: 0, expiresInMs: 6000 });
    // An older advert from the same key changes nothing.
    expect(peers.upsert(payload({ seq: 1, load: 0 }), KEY_A, '127.0.0.1')).toBe('ignored');
    expect(peers.get('a1')?.load).toBe(3);
    // The returned lists are copies.
    peers.list()[0]!.routines.push('mutated');
    expect(peers.get('a1')?.routines).toEqual(['echo', 'resize']);
  });

  it('expiry: a peer that stops advertising leaves after its ttl (from receipt); nextExpiry says when', () => {
    const { peers, clock } = table();
    expect(peers.nextExpiry()).toBeUndefined();
    peers.upsert(payload({ agent: 'a1', ttl: 6000 }), KEY_A, 'x');
    clock.advance(1000);
    peers.upsert(payload({ agent: 'b1', ttl: 3000 }), KEY_B, 'y');
    expect(peers.nextExpiry()).toBe(NOW + 4000);
    clock.set(NOW + 3999);
    expect(peers.expire()).toEqual([]);
    clock.set(NOW + 4000);
    expect(peers.get('b1')).toBeUndefined(); // expired peers are invisible before expire() runs
    expect(peers.list().map((p) => p.agent)).toEqual(['a1']);
    expect(peers.expire()).toEqual(['b1']);
    expect(peers.nextExpiry()).toBe(NOW + 6000);
    // A fresh advert pushes the expiry back.
    clock.set(NOW + 5000);
    peers.upsert(payload({ agent: 'a1', seq: 2, ttl: 6000 }), KEY_A, 'x');
    clock.set(NOW + 10_000);
    expect(peers.expire()).toEqual([]);
    clock.set(NOW + 11_000);
    expect(peers.expire()).toEqual(['a1']);
    expect(peers.size).toBe(0);
  });

  it("expiry does not depend on the sender's clock (iat far behind still lives for its ttl)", () => {
    const { peers, clock } = table();
    peers.upsert(payload({ iat: NOW - 25_000, ttl: 6000 }), KEY_A, 'x');
    clock.advance(5999);
    expect(peers.expire()).toEqual([]);
    expect(peers.get('a1')?.expiresInMs).toBe(1);
  });

  it('goodbye removes the peer, but only when signed by the same key', () => {
    const { peers } = table();
    peers.upsert(payload({ seq: 1 }), KEY_A, 'x');
    expect(peers.upsert(payload({ seq: 2, goodbye: true }), KEY_B, 'x')).toBe('conflict');
    expect(peers.size).toBe(1);
    expect(peers.upsert(payload({ seq: 2, goodbye: true }), KEY_A, 'x')).toBe('removed');
    expect(peers.size).toBe(0);
    expect(peers.upsert(payload({ seq: 3, goodbye: true }), KEY_A, 'x')).toBe('ignored');
  });

  it('another key cannot take over or evict a live entry; it takes over once the entry expired (key rotation)', () => {
    const { peers, clock } = table();
    peers.upsert(payload({ seq: 100 }), KEY_A, 'x');
    expect(peers.upsert(payload({ seq: 1 }), KEY_B, 'x')).toBe('conflict');
    expect(peers.upsert(payload({ seq: 2, goodbye: true }), KEY_B, 'x')).toBe('conflict');
    expect(peers.get('a1')?.keyId).toBe(KEY_A);
    clock.advance(6001);
    expect(peers.upsert(payload({ seq: 3 }), KEY_B, 'x')).toBe('added');
    expect(peers.get('a1')?.keyId).toBe(KEY_B);
  });

  it('markUntrusted: shows a cool-down until the deadline, even while the peer keeps advertising', () => {
    const { peers, clock } = table();
    peers.upsert(payload({ agent: 'a1', load: 0, ttl: 60_000 }), KEY_A, 'x');
    peers.upsert(payload({ agent: 'b1', load: 3, ttl: 60_000 }), KEY_B, 'y');
    peers.markUntrusted('a1', NOW + 10_000);
    const coolDowns = () => peers.list().map((p) => [p.agent, p.coolDownMs]);
    expect(coolDowns()).toEqual([
      ['a1', 10_000],
      ['b1', 0],
    ]);
    clock.advance(5000);
    peers.upsert(payload({ agent: 'a1', seq: 2, load: 0, ttl: 60_000 }), KEY_A, 'x');
    expect(peers.get('a1')?.coolDownMs).toBe(5000);
    // An earlier deadline never shortens it.
    peers.markUntrusted('a1', NOW + 6000);
    clock.set(NOW + 9999);
    expect(peers.get('a1')?.coolDownMs).toBe(1);
    clock.set(NOW + 10_000);
    expect(coolDowns()).toEqual([
      ['a1', 0],
      ['b1', 0],
    ]);
  });

  it('signing-key rotation: a key bound to the same SPIFFE ID takes the entry over; replays and unbound keys cannot', () => {
    const { peers } = table();
    expect(peers.upsert(payload({ seq: 10 }), KEY_A, '127.0.0.1', { bound: true })).toBe('added');
    // Unbound (no pin, no endorsement): another key may not take a live name.
    expect(peers.upsert(payload({ seq: 11 }), KEY_B, '127.0.0.1')).toBe('conflict');
    // Bound but for another SPIFFE ID: no.
    expect(peers.upsert(payload({ seq: 11, spiffe: 'spiffe://other.domain/agent/a1' }), KEY_B, '127.0.0.1', { bound: true })).toBe('conflict');
    // Bound with a sequence number not above the entry's (a replay): no.
    expect(peers.upsert(payload({ seq: 10 }), KEY_B, '127.0.0.1', { bound: true })).toBe('conflict');
    // A goodbye of another key never removes the entry.
    expect(peers.upsert(payload({ seq: 12, goodbye: true }), KEY_B, '127.0.0.1', { bound: true })).toBe('conflict');
    expect(peers.upsert(payload({ seq: 12 }), KEY_B, '127.0.0.1', { bound: true })).toBe('rekeyed');
    expect(peers.get('a1')?.keyId).toBe(KEY_B);
    // The old key's earlier adverts, replayed, cannot take it back.
    expect(peers.upsert(payload({ seq: 11 }), KEY_A, '127.0.0.1', { bound: true })).toBe('conflict');
    expect(peers.upsert(payload({ seq: 13 }), KEY_B, '127.0.0.1', { bound: true })).toBe('updated');
  });

  it('dropUntrusted removes entries of keys the trust store no longer lists, keeping endorsed ones', () => {
    const { peers } = table();
    peers.upsert(payload({ seq: 1 }), KEY_A, '127.0.0.1');
    peers.upsert(payload({ seq: 1, agent: 'a2', spiffe: 'spiffe://skein.local/agent/a2' }), KEY_B, '127.0.0.1', { endorsed: true, bound: true });
    expect(peers.dropUntrusted(() => false)).toEqual(['a1']);
    expect(peers.list().map((p) => p.agent)).toEqual(['a2']);
  });
});
