/**
 * Detached signatures over files (plugins). `<file>.sig` is a small JSON document:
 *
 *   { "v": 1, "alg": "ed25519", "keyId": "…", "name": "…", "version": "…",
 *     "sha256": "<hex of the file>", "sig": "<base64url Ed25519 signature>" }
 *
 * The signature covers the canonical CBOR of
 *   { v, keyId, name, version, sha256, context: "skein-plugin-v1" }
 * so the signer vouches for this exact content under this name and version, and the
 * signature can never be mistaken for an advertisement's (different context). JSON keeps the
 * .sig readable in code review; the bytes that are signed are still canonical CBOR.
 *
 * Verification order: parse the .sig, find the key, check the signature over the statement,
 * then compare the statement's sha256 with the file. So an edited file reports TAMPERED and an
 * edited .sig reports INVALID.
 */
import { createHash, sign as edSign, verify as edVerify } from 'node:crypto';
import { closeSync, fstatSync, openSync, readFileSync } from 'node:fs';
import { encodeCanonical } from './canonical.ts';
import { SigningError } from './errors.ts';
import { writeFileAtomic } from '../common/fs/index.ts';
import { assertSigningKey, KEY_ID_PATTERN, trustedVerifyKey, type SigningKey, type TrustedKeys } from './keys.ts';

export const PLUGIN_SIGNATURE_CONTEXT = 'skein-plugin-v1';
const MAX_SIG_FILE_BYTES = 16 * 1024;
const SIG_FIELDS = ['v', 'alg', 'keyId', 'name', 'version', 'sha256', 'sig'] as const;
const SHA256_HEX = /^[0-9a-f]{64}$/;
const SIG_B64URL = /^[A-Za-z0-9_-]{86}$/;
// Names and versions show up in logs and error messages: printable, bounded.
const NAME = /^[^\x00-\x1f\x7f]{1,128}$/;
const VERSION = /^[^\x00-\x1f\x7f]{1,64}$/;

/** The JSON stored in `<file>.sig`. */
export interface FileSignature {
  v: 1;
  alg: 'ed25519';
  keyId: string;
  name: string;
  version: string;
  sha256: string;
  sig: string;
}

export interface VerifiedFile {
  keyId: string;
  name: string;
  version: string;
  sha256: string;
}

export interface VerifyFileOptions {
  trustedKeys: TrustedKeys;
  /** When set, a valid signature for another plugin name is refused (SKEIN_ERR_SIG_NAME_MISMATCH). */
  expectedName?: string;
}

function statement(s: { keyId: string; name: string; version: string; sha256: string }): Buffer {
  return encodeCanonical({ v: 1, keyId: s.keyId, name: s.name, version: s.version, sha256: s.sha256, context: PLUGIN_SIGNATURE_CONTEXT });
}

function sha256File(path: string): string {
  return createHash('sha256').update(readFileSync(path)).digest('hex');
}

/**
 * Signs `path` and writes `<path>.sig` (replacing an older one). Returns what was written.
 *
 * @example
 *   signFile('plugins/jwt-auth.ts', { name: 'jwt-auth', version: '1.2.0' }, readPrivateKey('release.key'));
 */
export function signFile(path: string, meta: { name: string; version: string }, key: SigningKey): FileSignature {
  assertSigningKey(key);
  if (typeof meta.name !== 'string' || !NAME.test(meta.name)) throw new SigningError('SKEIN_ERR_SIG_UNENCODABLE', 'plugin name must be 1–128 printable characters');
  if (typeof meta.version !== 'string' || !VERSION.test(meta.version)) throw new SigningError('SKEIN_ERR_SIG_UNENCODABLE', 'plugin version must be 1–64 printable characters');
  const sha256 = sha256File(path);
  const fields = { keyId: key.keyId, name: meta.name, version: meta.version, sha256 };
  const sig = edSign(null, statement(fields), key.privateKey).toString('base64url');
  const doc: FileSignature = { v: 1, alg: 'ed25519', ...fields, sig };
  writeFileAtomic(`${path}.sig`, `${JSON.stringify(doc, null, 2)}\n`, 0o644);
  return doc;
}

function readSigFile(sigPath: string): string {
  let fd: number;
  try {
    fd = openSync(sigPath, 'r');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new SigningError('SKEIN_ERR_SIG_MISSING', `no signature file ${sigPath}`, { path: sigPath });
    }
    throw new SigningError('SKEIN_ERR_SIG_MALFORMED', `cannot read ${sigPath}: ${(err as Error).message}`, { path: sigPath }, { cause: err });
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile() || st.size > MAX_SIG_FILE_BYTES) {
      throw new SigningError('SKEIN_ERR_SIG_MALFORMED', `${sigPath} is not a regular file of at most ${MAX_SIG_FILE_BYTES} bytes`, { path: sigPath });
    }
    return readFileSync(fd, 'utf8');
  } finally {
    closeSync(fd);
  }
}

/** Strict shape check: exactly the documented fields with the documented types. */
function parseSigFile(text: string, sigPath: string): FileSignature {
  const bad = (why: string, cause?: unknown): SigningError => new SigningError('SKEIN_ERR_SIG_MALFORMED', `${sigPath}: ${why}`, { path: sigPath }, cause === undefined ? undefined : { cause });
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    throw bad('not valid JSON', err);
  }
  if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) throw bad('not a JSON object');
  const o = doc as Record<string, unknown>;
  const extra = Object.keys(o).filter((k) => !(SIG_FIELDS as readonly string[]).includes(k));
  if (extra.length) throw bad(`unknown field(s) ${extra.join(', ')}`);
  if (o.v !== 1) throw bad(`unsupported version ${JSON.stringify(o.v)} (expected 1)`);
  if (o.alg !== 'ed25519') throw bad(`unsupported alg ${JSON.stringify(o.alg)} (expected "ed25519")`);
  if (typeof o.keyId !== 'string' || !KEY_ID_PATTERN.test(o.keyId)) throw bad('keyId must be 16 lower-case hex characters');
  if (typeof o.name !== 'string' || !NAME.test(o.name)) throw bad('name must be 1–128 printable characters');
  if (typeof o.version !== 'string' || !VERSION.test(o.version)) throw bad('version must be 1–64 printable characters');
  if (typeof o.sha256 !== 'string' || !SHA256_HEX.test(o.sha256)) throw bad('sha256 must be 64 lower-case hex characters');
  // 86 base64url characters hold 64 bytes plus 4 padding bits; re-encoding refuses non-zero ones.
  if (typeof o.sig !== 'string' || !SIG_B64URL.test(o.sig) || Buffer.from(o.sig, 'base64url').toString('base64url') !== o.sig) {
    throw bad('sig must be the canonical base64url of 64 bytes');
  }
  return o as unknown as FileSignature;
}

/**
 * Verifies `<path>.sig` against `path`. Throws SigningError: SKEIN_ERR_SIG_MISSING,
 * SKEIN_ERR_SIG_MALFORMED, SKEIN_ERR_SIG_UNKNOWN_KEY, SKEIN_ERR_SIG_INVALID,
 * SKEIN_ERR_SIG_TAMPERED, SKEIN_ERR_SIG_NAME_MISMATCH.
 *
 * Note: the file is hashed here; whoever loads it afterwards reads it again. Load from a
 * directory only trusted users can write, or load the bytes that were hashed.
 *
 * @example
 *   const { name, version, keyId } = verifyFile('plugins/jwt-auth.ts', { trustedKeys, expectedName: 'jwt-auth' });
 */
export function verifyFile(path: string, options: VerifyFileOptions): VerifiedFile {
  const sigPath = `${path}.sig`;
  const doc = parseSigFile(readSigFile(sigPath), sigPath);

  const verifyKey = trustedVerifyKey(options.trustedKeys, doc.keyId);
  if (!verifyKey) throw new SigningError('SKEIN_ERR_SIG_UNKNOWN_KEY', `${path} is signed by untrusted key ${doc.keyId}`, { path, keyId: doc.keyId });
  if (!edVerify(null, statement(doc), verifyKey, Buffer.from(doc.sig, 'base64url'))) {
    throw new SigningError('SKEIN_ERR_SIG_INVALID', `${sigPath}: signature by ${doc.keyId} does not verify`, { path, keyId: doc.keyId });
  }

  let actual: string;
  try {
    actual = sha256File(path);
  } catch (err) {
    throw new SigningError('SKEIN_ERR_SIG_TAMPERED', `cannot read the signed file ${path}: ${(err as Error).message}`, { path }, { cause: err });
  }
  if (actual !== doc.sha256) {
    throw new SigningError('SKEIN_ERR_SIG_TAMPERED', `${path} was modified after signing (sha256 ${actual}, signed ${doc.sha256})`, { path, keyId: doc.keyId, sha256: actual, signed: doc.sha256 });
  }
  if (options.expectedName !== undefined && doc.name !== options.expectedName) {
    throw new SigningError('SKEIN_ERR_SIG_NAME_MISMATCH', `${path} is signed as plugin "${doc.name}", expected "${options.expectedName}"`, { path, name: doc.name, expected: options.expectedName });
  }
  return { keyId: doc.keyId, name: doc.name, version: doc.version, sha256: doc.sha256 };
}
