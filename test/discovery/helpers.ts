/** Shared fixtures for the discovery unit tests: deterministic keys, payloads and a clock. */
import { expect } from 'vitest';
import { keyPairFromPrivate, privateKeyFromSeed, type KeyPair } from '../../signing/index.ts';
import type { AdvertPayload } from '../../agent/discovery/advert.ts';
import type { CounterName, RejectReason } from '../../agent/discovery/reasons.ts';
import type { AdvertVerifier, VerifyResult } from '../../agent/discovery/verifier.ts';

export const NOW = 1_800_000_000_000;
export const FLEET = 'prod';
export const FINGERPRINT = 'ab'.repeat(32);

/** The same seed always gives the same key (Ed25519 is deterministic). */
export const seededKey = (n: number): KeyPair => keyPairFromPrivate(privateKeyFromSeed(Buffer.alloc(32, n)));

export function payload(over: Partial<AdvertPayload> = {}): AdvertPayload {
  return {
    v: 1,
    fleet: FLEET,
    agent: 'a1',
    spiffe: 'spiffe://skein.local/agent/a1',
    endpoints: ['127.0.0.1:7443', '[::1]:7443'],
    routines: ['echo', 'resize'],
    load: 1,
    capacity: 4,
    tlsFingerprint: FINGERPRINT,
    seq: 1,
    iat: NOW,
    ttl: 6000,
    ...over,
  };
}

export interface TestClock {
  now: () => number;
  set: (t: number) => void;
  advance: (ms: number) => void;
}

export function testClock(start = NOW): TestClock {
  let t = start;
  return { now: () => t, set: (v) => (t = v), advance: (ms) => (t += ms) };
}

/** Verifies, asserts the rejection reason AND that exactly that counter moved by one. */
export function expectRejected(v: AdvertVerifier, bytes: Uint8Array, reason: RejectReason, source = '10.0.0.9', own = false): Extract<VerifyResult, { ok: false }> {
  const before = v.counters();
  const r = v.verify(bytes, source, own);
  expect(r).toMatchObject({ ok: false, reason });
  const after = v.counters();
  for (const name of Object.keys(after) as CounterName[]) expect(after[name], `counter ${name}`).toBe(before[name] + (name === reason ? 1 : 0));
  return r as Extract<VerifyResult, { ok: false }>;
}

/** Verifies and asserts acceptance (and the 'accepted' counter). */
export function expectAccepted(v: AdvertVerifier, bytes: Uint8Array, source = '10.0.0.9', own = false): Extract<VerifyResult, { ok: true }> {
  const before = v.counters().accepted;
  const r = v.verify(bytes, source, own);
  expect(r, r.ok ? '' : `${r.reason}: ${r.detail ?? ''}`).toMatchObject({ ok: true });
  expect(v.counters().accepted).toBe(before + 1);
  return r as Extract<VerifyResult, { ok: true }>;
}
