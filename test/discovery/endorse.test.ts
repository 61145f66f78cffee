import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Decoder } from 'cbor-x';
import nacl from 'tweetnacl';
import { afterAll, describe, expect, it } from 'vitest';
import { ENDORSE_CONTEXT, endorse, inspectEndorsement, readEndorsementFile, verifyEndorsement } from '../../agent/discovery/endorse.ts';
import { encodeCanonical, generateKeyPair, keyId, sign } from '../../signing/index.ts';
import { NOW } from './helpers.ts';

const SPIFFE = 'spiffe://skein.local/agent/a1';
const root = generateKeyPair();
const agent = generateKeyPair();
const roots = new Map([[root.keyId, root.publicKey]]);
const cbor = new Decoder({ mapsAsObjects: true, useRecords: false });

const dirs: string[] = [];
afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

describe('endorsements', () => {
  it('round trip: the root vouches for the agent key, its SPIFFE ID and expiry', () => {
    const bytes = endorse({ root, agentPublicKey: agent.publicKey, spiffeId: SPIFFE, notAfter: NOW + 1000 });
    const r = verifyEndorsement(bytes, roots, NOW);
    expect(r).toEqual({ ok: true, agentKey: new Uint8Array(agent.publicKey), agentKeyId: agent.keyId, spiffe: SPIFFE, notAfter: NOW + 1000, rootKeyId: root.keyId });
  });

  it('is a "skein-endorse-v1" envelope over { v, agentKey, spiffe, notAfter }, verifiable with tweetnacl', () => {
    const bytes = endorse({ root, agentPublicKey: agent.publicKey, spiffeId: SPIFFE, notAfter: NOW });
    const [version, context, id, payloadBytes, sig] = cbor.decode(bytes) as [number, string, string, Uint8Array, Uint8Array];
    expect([version, context, id]).toEqual([1, ENDORSE_CONTEXT, root.keyId]);
    const p = cbor.decode(payloadBytes) as Record<string, unknown>;
    expect(Object.keys(p)).toEqual(['v', 'spiffe', 'agentKey', 'notAfter']);
    expect(Buffer.from(p.agentKey as Uint8Array).equals(agent.publicKey)).toBe(true);
    expect(nacl.sign.detached.verify(encodeCanonical([ENDORSE_CONTEXT, root.keyId, payloadBytes]), sig, root.publicKey)).toBe(true);
    expect(bytes.length).toBeLessThan(220);
  });

  it('expires after notAfter (notAfter itself is still valid)', () => {
    const bytes = endorse({ root, agentPublicKey: agent.publicKey, spiffeId: SPIFFE, notAfter: NOW });
    expect(verifyEndorsement(bytes, roots, NOW).ok).toBe(true);
    expect(verifyEndorsement(bytes, roots, NOW + 1)).toMatchObject({ ok: false, reason: 'endorsement-expired' });
  });

  it('is invalid when forged, tampered, for another purpose or not an endorsement', () => {
    const forger = generateKeyPair();
    const forged = endorse({ root: forger, agentPublicKey: agent.publicKey, spiffeId: SPIFFE, notAfter: NOW + 1 });
    expect(verifyEndorsement(forged, roots, NOW)).toMatchObject({ ok: false, reason: 'endorsement-invalid', detail: expect.stringMatching(/untrusted key/) });
    const good = Buffer.from(endorse({ root, agentPublicKey: agent.publicKey, spiffeId: SPIFFE, notAfter: NOW + 1 }));
    for (let i = 0; i < good.length; i++) {
      const t = Buffer.from(good);
      t[i]! ^= 0x10;
      expect(verifyEndorsement(t, roots, NOW).ok, `byte ${i}`).toBe(false);
    }
    expect(verifyEndorsement(sign({ v: 1, agentKey: agent.publicKey, spiffe: SPIFFE, notAfter: NOW + 1 }, root, 'skein-advert-v1'), roots, NOW)).toMatchObject({ reason: 'endorsement-invalid' });
    // Signed by the root, but the wrong shape.
    for (const payload of [
      { v: 2, agentKey: agent.publicKey, spiffe: SPIFFE, notAfter: NOW + 1 },
      { v: 1, agentKey: agent.publicKey.subarray(1), spiffe: SPIFFE, notAfter: NOW + 1 },
      { v: 1, agentKey: agent.publicKey, spiffe: 'x', notAfter: NOW + 1 },
      { v: 1, agentKey: agent.publicKey, spiffe: SPIFFE, notAfter: 'soon' },
    ]) {
      expect(verifyEndorsement(sign(payload, root, ENDORSE_CONTEXT), roots, NOW)).toMatchObject({ ok: false, reason: 'endorsement-invalid' });
    }
    expect(verifyEndorsement(new Uint8Array(2000), roots, NOW)).toMatchObject({ ok: false, reason: 'endorsement-invalid' });
  });

  it('endorse refuses bad input', () => {
    expect(() => endorse({ root, agentPublicKey: new Uint8Array(31), spiffeId: SPIFFE, notAfter: NOW })).toThrow(/32-byte/);
    expect(() => endorse({ root, agentPublicKey: agent.publicKey, spiffeId: 'spiffe://nopath', notAfter: NOW })).toThrow(/not a SPIFFE ID/);
    expect(() => endorse({ root, agentPublicKey: agent.publicKey, spiffeId: SPIFFE, notAfter: 1.5 })).toThrow(/notAfter/);
  });

  it('inspect reads an endorsement without verifying it; readEndorsementFile checks the file', () => {
    const bytes = endorse({ root, agentPublicKey: agent.publicKey, spiffeId: SPIFFE, notAfter: NOW });
    expect(inspectEndorsement(bytes)).toMatchObject({ agentKeyId: keyId(agent.publicKey), spiffe: SPIFFE, notAfter: NOW, rootKeyId: root.keyId });
    expect(() => inspectEndorsement(new Uint8Array([1, 2]))).toThrow(/not a skein endorsement/);
    const dir = mkdtempSync(join(tmpdir(), 'skein-endorse-'));
    dirs.push(dir);
    writeFileSync(join(dir, 'e'), bytes);
    expect(Buffer.from(readEndorsementFile(join(dir, 'e'))).equals(Buffer.from(bytes))).toBe(true);
    writeFileSync(join(dir, 'big'), Buffer.alloc(5000));
    expect(() => readEndorsementFile(join(dir, 'big'))).toThrow(/5000 bytes/);
    expect(() => readEndorsementFile(join(dir, 'missing'))).toThrow(/cannot read endorsement/);
    writeFileSync(join(dir, 'junk'), 'hello');
    expect(() => readEndorsementFile(join(dir, 'junk'))).toThrow(/not a skein endorsement/);
  });
});
