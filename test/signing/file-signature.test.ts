import { createHash } from 'node:crypto';
import { appendFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import nacl from 'tweetnacl';
import { afterEach, describe, expect, it } from 'vitest';
import { encodeCanonical } from '../../signing/canonical.ts';
import { SigningError, type SigningErrorCode } from '../../signing/errors.ts';
import { PLUGIN_SIGNATURE_CONTEXT, signFile, verifyFile, type FileSignature } from '../../signing/file-signature.ts';
import { generateKeyPair, type KeyPair } from '../../signing/keys.ts';

const dirs: string[] = [];
afterEach(() => dirs.splice(0).forEach((d) => rmSync(d, { recursive: true, force: true })));

const PLUGIN_SOURCE = 'export default { name: "jwt-auth", authenticate() { return undefined; } };\n';

function setup(): { dir: string; file: string; pair: KeyPair; trustedKeys: Map<string, Uint8Array> } {
  const dir = mkdtempSync(join(tmpdir(), 'skein-filesig-'));
  dirs.push(dir);
  const file = join(dir, 'jwt-auth.ts');
  writeFileSync(file, PLUGIN_SOURCE);
  const pair = generateKeyPair();
  return { dir, file, pair, trustedKeys: new Map([[pair.keyId, pair.publicKey]]) };
}

function codeOf(fn: () => unknown): SigningErrorCode {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(SigningError);
    return (err as SigningError).code;
  }
  throw new Error('expected a SigningError');
}

const readSig = (file: string): FileSignature => JSON.parse(readFileSync(`${file}.sig`, 'utf8')) as FileSignature;
const writeSig = (file: string, doc: unknown): void => writeFileSync(`${file}.sig`, typeof doc === 'string' ? doc : JSON.stringify(doc));

describe('file signatures', () => {
  it('signs and verifies; the .sig has the documented fields', () => {
    const { file, pair, trustedKeys } = setup();
    const written = signFile(file, { name: 'jwt-auth', version: '1.2.0' }, pair);
    const sha256 = createHash('sha256').update(PLUGIN_SOURCE).digest('hex');
    const doc = readSig(file);
    expect(doc).toEqual(written);
    expect(Object.keys(doc)).toEqual(['v', 'alg', 'keyId', 'name', 'version', 'sha256', 'sig']);
    expect(doc).toMatchObject({ v: 1, alg: 'ed25519', keyId: pair.keyId, name: 'jwt-auth', version: '1.2.0', sha256 });
    expect(Buffer.from(doc.sig, 'base64url')).toHaveLength(64);
    expect(verifyFile(file, { trustedKeys })).toEqual({ keyId: pair.keyId, name: 'jwt-auth', version: '1.2.0', sha256 });
    expect(verifyFile(file, { trustedKeys, expectedName: 'jwt-auth' }).name).toBe('jwt-auth');
  });

  it('signs the canonical CBOR statement with the plugin context (checked with tweetnacl)', () => {
    const { file, pair } = setup();
    const doc = signFile(file, { name: 'jwt-auth', version: '1.2.0' }, pair);
    // Hand-built canonical map: keys sorted shortest first, then bytewise.
    const statement = encodeCanonical({ v: 1, name: doc.name, keyId: doc.keyId, sha256: doc.sha256, context: PLUGIN_SIGNATURE_CONTEXT, version: doc.version });
    expect(statement.subarray(0, 4).toString('hex')).toBe('a6617601'); // {"v": 1, …}: "v" sorts first
    expect(nacl.sign.detached.verify(statement, Buffer.from(doc.sig, 'base64url'), pair.publicKey)).toBe(true);
  });

  it('SKEIN_ERR_SIG_TAMPERED: the file changed after signing', () => {
    const { file, pair, trustedKeys } = setup();
    signFile(file, { name: 'jwt-auth', version: '1.2.0' }, pair);
    appendFileSync(file, 'globalThis.evil = true;\n');
    expect(codeOf(() => verifyFile(file, { trustedKeys }))).toBe('SKEIN_ERR_SIG_TAMPERED');
    rmSync(file);
    expect(codeOf(() => verifyFile(file, { trustedKeys }))).toBe('SKEIN_ERR_SIG_TAMPERED');
  });

  it('SKEIN_ERR_SIG_UNKNOWN_KEY: signed by a key that is not trusted', () => {
    const { file, trustedKeys } = setup();
    signFile(file, { name: 'jwt-auth', version: '1.2.0' }, generateKeyPair());
    expect(codeOf(() => verifyFile(file, { trustedKeys }))).toBe('SKEIN_ERR_SIG_UNKNOWN_KEY');
    expect(codeOf(() => verifyFile(file, { trustedKeys: () => undefined }))).toBe('SKEIN_ERR_SIG_UNKNOWN_KEY');
  });

  it("SKEIN_ERR_SIG_INVALID: an edited statement, or another key's signature under a trusted id", () => {
    const { file, pair, trustedKeys } = setup();
    const doc = signFile(file, { name: 'jwt-auth', version: '1.2.0' }, pair);
    for (const edit of [{ name: 'other' }, { version: '9.9.9' }]) {
      writeSig(file, { ...doc, ...edit });
      expect(codeOf(() => verifyFile(file, { trustedKeys }))).toBe('SKEIN_ERR_SIG_INVALID');
    }
    // Updating sha256 to match a tampered file does not help: the signature covers it.
    appendFileSync(file, '// more\n');
    writeSig(file, { ...doc, sha256: createHash('sha256').update(readFileSync(file)).digest('hex') });
    expect(codeOf(() => verifyFile(file, { trustedKeys }))).toBe('SKEIN_ERR_SIG_INVALID');
    const attacker = signFile(file, { name: 'jwt-auth', version: '1.2.0' }, generateKeyPair());
    writeSig(file, { ...attacker, keyId: pair.keyId });
    expect(codeOf(() => verifyFile(file, { trustedKeys }))).toBe('SKEIN_ERR_SIG_INVALID');
  });

  it('SKEIN_ERR_SIG_MISSING: no .sig next to the file', () => {
    const { file, trustedKeys } = setup();
    const err = (() => {
      try {
        verifyFile(file, { trustedKeys });
      } catch (e) {
        return e as SigningError;
      }
      throw new Error('expected an error');
    })();
    expect(err.code).toBe('SKEIN_ERR_SIG_MISSING');
    expect(err.message).toContain(`${file}.sig`);
  });

  it('SKEIN_ERR_SIG_MALFORMED: anything but the documented JSON', () => {
    const { file, pair, trustedKeys } = setup();
    const doc = signFile(file, { name: 'jwt-auth', version: '1.2.0' }, pair);
    const sigBytes = Buffer.from(doc.sig, 'base64url');
    const nonCanonicalSig = doc.sig.slice(0, -1) + (doc.sig.at(-1) === 'A' ? 'B' : 'A'); // sets padding bits (or changes them)
    const cases: [string, unknown][] = [
      ['empty', ''],
      ['not JSON', 'ed25519 signature'],
      ['JSON array', '[]'],
      ['JSON null', 'null'],
      ['extra field', { ...doc, extra: 1 }],
      ['missing field', { ...doc, sig: undefined }],
      ['version 2', { ...doc, v: 2 }],
      ['other alg', { ...doc, alg: 'rsa' }],
      ['keyId upper-case', { ...doc, keyId: doc.keyId.toUpperCase() }],
      ['sha256 short', { ...doc, sha256: doc.sha256.slice(2) }],
      ['sha256 number', { ...doc, sha256: 1 }],
      ['sig base64 with padding', { ...doc, sig: sigBytes.toString('base64') }],
      ['sig 63 bytes', { ...doc, sig: sigBytes.subarray(1).toString('base64url') }],
      ['empty name', { ...doc, name: '' }],
      ['name with newline', { ...doc, name: 'a\nb' }],
      ['huge file', 'x'.repeat(20_000)],
    ];
    for (const [name, content] of cases) {
      writeSig(file, content);
      expect(
        codeOf(() => verifyFile(file, { trustedKeys })),
        name,
      ).toBe('SKEIN_ERR_SIG_MALFORMED');
    }
    if (Buffer.from(nonCanonicalSig, 'base64url').toString('base64url') !== nonCanonicalSig) {
      writeSig(file, { ...doc, sig: nonCanonicalSig });
      expect(codeOf(() => verifyFile(file, { trustedKeys }))).toBe('SKEIN_ERR_SIG_MALFORMED');
    }
  });

  it('SKEIN_ERR_SIG_NAME_MISMATCH: a valid signature for another plugin name', () => {
    const { file, pair, trustedKeys } = setup();
    signFile(file, { name: 'jwt-auth', version: '1.2.0' }, pair);
    expect(codeOf(() => verifyFile(file, { trustedKeys, expectedName: 'token-auth' }))).toBe('SKEIN_ERR_SIG_NAME_MISMATCH');
  });

  it('refuses to sign with a mismatched key id or unprintable names', () => {
    const { file, pair } = setup();
    expect(codeOf(() => signFile(file, { name: 'x', version: '1' }, { privateKey: pair.privateKey, keyId: generateKeyPair().keyId }))).toBe('SKEIN_ERR_SIG_KEY_INVALID');
    expect(codeOf(() => signFile(file, { name: '', version: '1' }, pair))).toBe('SKEIN_ERR_SIG_UNENCODABLE');
    expect(codeOf(() => signFile(file, { name: 'x', version: 'a\u0000' }, pair))).toBe('SKEIN_ERR_SIG_UNENCODABLE');
  });
});
