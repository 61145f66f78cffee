import { createHash, generateKeyPairSync, sign as edSign, verify as edVerify } from 'node:crypto';
import { chmodSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import nacl from 'tweetnacl';
import { afterEach, describe, expect, it } from 'vitest';
import { SigningError, type SigningErrorCode } from '../../signing/errors.ts';
import {
  formatPublicKey,
  generateKeyPair,
  keyId,
  privateKeyFromSeed,
  privateKeyToSeed,
  publicKeyFromRaw,
  publicKeyToRaw,
  readPrivateKey,
  readPublicKey,
  trustStore,
  writeKeyPair,
} from '../../signing/keys.ts';

const dirs: string[] = [];
afterEach(() => dirs.splice(0).forEach((d) => rmSync(d, { recursive: true, force: true })));
function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'skein-keys-'));
  dirs.push(dir);
  return dir;
}

function signingError(fn: () => unknown, code: SigningErrorCode): SigningError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(SigningError);
    expect((err as SigningError).code).toBe(code);
    return err as SigningError;
  }
  throw new Error(`expected ${code}`);
}

describe('keys', () => {
  it('generates a pair with a 32-byte public key and a stable key id', () => {
    const pair = generateKeyPair();
    expect(pair.publicKey).toHaveLength(32);
    expect(pair.privateKey.type).toBe('private');
    expect(pair.privateKey.asymmetricKeyType).toBe('ed25519');
    expect(pair.keyId).toMatch(/^[0-9a-f]{16}$/);
    expect(pair.keyId).toBe(createHash('sha256').update(pair.publicKey).digest('hex').slice(0, 16));
    expect(keyId(new Uint8Array(pair.publicKey))).toBe(pair.keyId);
  });

  it('converts raw ↔ KeyObject both ways, matching tweetnacl for the same seed', () => {
    const seed = Buffer.from(nacl.randomBytes(32));
    const priv = privateKeyFromSeed(seed);
    expect(privateKeyToSeed(priv).equals(seed)).toBe(true);
    const raw = publicKeyToRaw(priv);
    expect(raw.equals(Buffer.from(nacl.sign.keyPair.fromSeed(seed).publicKey))).toBe(true);
    const pub = publicKeyFromRaw(raw);
    expect(publicKeyToRaw(pub).equals(raw)).toBe(true);
    const msg = Buffer.from('hello');
    expect(edVerify(null, msg, pub, edSign(null, msg, priv))).toBe(true);
  });

  it('refuses wrong-sized raw keys and non-Ed25519 KeyObjects', () => {
    signingError(() => publicKeyFromRaw(Buffer.alloc(31)), 'SKEIN_ERR_SIG_KEY_INVALID');
    signingError(() => privateKeyFromSeed(Buffer.alloc(33)), 'SKEIN_ERR_SIG_KEY_INVALID');
    signingError(() => keyId(Buffer.alloc(16)), 'SKEIN_ERR_SIG_KEY_INVALID');
    const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    signingError(() => publicKeyToRaw(ec.publicKey), 'SKEIN_ERR_SIG_KEY_INVALID');
    signingError(() => privateKeyToSeed(ec.privateKey), 'SKEIN_ERR_SIG_KEY_INVALID');
  });

  it('reads public keys as ed25519:<base64url>, PEM, or a path to either', () => {
    const pair = generateKeyPair();
    const text = formatPublicKey(pair.publicKey);
    expect(text).toMatch(/^ed25519:[A-Za-z0-9_-]{43}$/);
    expect(readPublicKey(text).equals(pair.publicKey)).toBe(true);
    expect(readPublicKey(`${text}\n`).equals(pair.publicKey)).toBe(true);
    const pem = publicKeyFromRaw(pair.publicKey).export({ format: 'pem', type: 'spki' }).toString();
    expect(readPublicKey(pem).equals(pair.publicKey)).toBe(true);
    const dir = tempDir();
    writeFileSync(join(dir, 'a.pub'), `${text}\n`);
    writeFileSync(join(dir, 'b.pem'), pem);
    expect(readPublicKey(join(dir, 'a.pub')).equals(pair.publicKey)).toBe(true);
    expect(readPublicKey(join(dir, 'b.pem')).equals(pair.publicKey)).toBe(true);
  });

  it('refuses malformed public key text', () => {
    const good = formatPublicKey(generateKeyPair().publicKey);
    const b64 = good.slice('ed25519:'.length);
    // The last base64url character of 32 bytes carries 2 padding bits; setting one is non-canonical.
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
    const last = alphabet.indexOf(b64.at(-1)!);
    const noncanonical = `ed25519:${b64.slice(0, -1)}${alphabet[(last & ~3) | 1]}`;
    const rsaPem = generateKeyPairSync('rsa', { modulusLength: 1024 }).publicKey.export({ format: 'pem', type: 'spki' }).toString();
    for (const bad of [
      `ed25519:${b64.slice(1)}`,
      `ed25519:${b64}A`,
      `ED25519:${b64}`,
      `ed25519:${b64.replace(/^./, '+')}`,
      noncanonical,
      rsaPem,
      '-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----',
      '/no/such/file.pub',
    ]) {
      signingError(() => readPublicKey(bad), 'SKEIN_ERR_SIG_KEY_INVALID');
    }
  });

  it('builds a trust store keyed by key id', () => {
    const a = generateKeyPair();
    const b = generateKeyPair();
    const store = trustStore([a.publicKey, formatPublicKey(b.publicKey)]);
    expect([...store.keys()].sort()).toEqual([a.keyId, b.keyId].sort());
    expect(store.get(b.keyId)!.equals(b.publicKey)).toBe(true);
  });
});

describe('key files', () => {
  it('writes a 0600 PKCS#8 private key and an ed25519: public key file that read back', () => {
    const path = join(tempDir(), 'agent.key');
    const pair = writeKeyPair(path);
    expect(statSync(path).mode & 0o777).toBe(0o600);
    expect(readFileSync(path, 'utf8')).toMatch(/^-----BEGIN PRIVATE KEY-----\n/);
    expect(readFileSync(`${path}.pub`, 'utf8')).toBe(`${formatPublicKey(pair.publicKey)}\n`);
    const back = readPrivateKey(path);
    expect(back.keyId).toBe(pair.keyId);
    expect(back.publicKey.equals(pair.publicKey)).toBe(true);
    expect(readPublicKey(`${path}.pub`).equals(pair.publicKey)).toBe(true);
    expect(readdirSync(join(path, '..')).sort()).toEqual(['agent.key', 'agent.key.pub']); // no temp files left
  });

  it('never overwrites an existing private key unless forced', () => {
    const path = join(tempDir(), 'agent.key');
    const first = writeKeyPair(path);
    const before = readFileSync(path, 'utf8');
    const err = signingError(() => writeKeyPair(path), 'SKEIN_ERR_SIG_KEY_EXISTS');
    expect(err.message).toContain(path);
    expect(readFileSync(path, 'utf8')).toBe(before);
    expect(readFileSync(`${path}.pub`, 'utf8')).toBe(`${formatPublicKey(first.publicKey)}\n`);
    const second = writeKeyPair(path, { force: true });
    expect(second.keyId).not.toBe(first.keyId);
    expect(readPrivateKey(path).keyId).toBe(second.keyId);
    expect(statSync(path).mode & 0o777).toBe(0o600);
    expect(readPublicKey(`${path}.pub`).equals(second.publicKey)).toBe(true);
    expect(readdirSync(join(path, '..')).sort()).toEqual(['agent.key', 'agent.key.pub']);
  });

  it('stores a given pair (seed-derived keys survive a round trip)', () => {
    const path = join(tempDir(), 'seeded.key');
    const seed = Buffer.alloc(32, 7);
    const priv = privateKeyFromSeed(seed);
    const raw = publicKeyToRaw(priv);
    writeKeyPair(path, { keyPair: { privateKey: priv, publicKey: raw, keyId: keyId(raw) } });
    expect(privateKeyToSeed(readPrivateKey(path).privateKey).equals(seed)).toBe(true);
  });

  it.each([0o644, 0o640, 0o604, 0o620, 0o602, 0o660, 0o666])('refuses a private key with mode %o, naming the path, the mode and the fix', (mode) => {
    const path = join(tempDir(), 'agent.key');
    writeKeyPair(path);
    chmodSync(path, mode);
    const err = signingError(() => readPrivateKey(path), 'SKEIN_ERR_SIG_KEY_PERMISSIONS');
    const octal = mode.toString(8).padStart(4, '0');
    expect(err.message).toContain(path);
    expect(err.message).toContain(octal);
    expect(err.message).toContain(`chmod 600 ${path}`);
    expect(err.details).toMatchObject({ path, mode: octal });
  });

  it('accepts owner-only modes (0600, 0400)', () => {
    const path = join(tempDir(), 'agent.key');
    const pair = writeKeyPair(path);
    chmodSync(path, 0o400);
    expect(readPrivateKey(path).keyId).toBe(pair.keyId);
  });

  it('reports missing, non-PEM and non-Ed25519 private keys as KEY_INVALID', () => {
    const dir = tempDir();
    signingError(() => readPrivateKey(join(dir, 'absent.key')), 'SKEIN_ERR_SIG_KEY_INVALID');
    writeFileSync(join(dir, 'junk.key'), 'not a key', { mode: 0o600 });
    signingError(() => readPrivateKey(join(dir, 'junk.key')), 'SKEIN_ERR_SIG_KEY_INVALID');
    const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'pem', type: 'pkcs8' }).toString();
    writeFileSync(join(dir, 'ec.key'), ec, { mode: 0o600 });
    signingError(() => readPrivateKey(join(dir, 'ec.key')), 'SKEIN_ERR_SIG_KEY_INVALID');
    signingError(() => readPrivateKey(dir), 'SKEIN_ERR_SIG_KEY_INVALID');
  });
});
