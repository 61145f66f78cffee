/**
 * signed-nonce: authenticates `authorization: SkeinNonce <payload>.<sig>` tokens, single-use
 * Ed25519-signed tokens bound to one routine (format: signing/nonce.ts; mint one with
 * `skein token sign-nonce --key KEY --routine NAME`).
 *
 * Options:
 *   keys       { "<name>": "ed25519:<base64url>", … }  required, 1–1000 keys. The name becomes
 *              the identity `nonce:<name>`; names are 1–64 of A-Z a-z 0-9 _ . @ -
 *   windowSec  freshness window in seconds, 1–3600 (default 60): a token is accepted while
 *              |now − ts| ≤ windowSec, so clocks may differ by up to the window
 *   maxNonces  replay cache size, 1–10,000,000 (default 100,000)
 *
 * Checks, in order, each with its 401 reason:
 *   NONCE_MALFORMED      not `<base64url>.<base64url>` of the documented JSON and a 64-byte signature
 *   NONCE_UNKNOWN_KEY    `kid` is not the id of a configured key
 *   NONCE_BAD_SIGNATURE  the signature does not verify with that key
 *   NONCE_STALE          `ts` is more than windowSec away from now
 *   NONCE_WRONG_ROUTINE  `routine` is not the routine the request calls
 *   NONCE_REPLAYED       this nonce was already accepted (and is still within its window)
 *   NONCE_CACHE_FULL     maxNonces unexpired nonces are remembered: refusing is the only way to
 *                        keep the single-use promise without unbounded memory
 * Signature comes before freshness so forged tokens are reported as forged, and a nonce is
 * remembered only once every check passed, so a bad token cannot burn a good one's nonce.
 *
 * A remembered nonce is forgotten at ts + windowSec: from then on the token is STALE anyway.
 *
 * Success: identity `nonce:<name>`, claims { kid, routine, ts }.
 *
 * Only './skein-plugin.ts' is imported: the compiled agent loads this file from disk, where
 * nothing else resolves. Crypto comes through ctx.crypto.
 */
import { definePlugin, type AuthnRequest, type AuthnResult, type OptionsFail } from './skein-plugin.ts';

export interface SignedNonceOptions {
  keys: Record<string, string>;
  windowSec: number;
  maxNonces: number;
}

const CONTEXT = 'skein-nonce-v1.';
const SCHEME = 'skeinnonce';
const KEY_NAME = /^[A-Za-z0-9_.@-]{1,64}$/;
const KEY_TEXT = /^ed25519:[A-Za-z0-9_-]{43}$/;
const KID = /^[0-9a-f]{16}$/;
const NONCE = /^[0-9a-f]{32}$/;
// {"v":1,"kid":"…16…","nonce":"…32…","ts":<≤16 digits>,"routine":"<≤64>"} is under 200
// bytes; 1 KiB of base64url leaves room for other signers' escaping without parsing megabytes.
const TOKEN = /^([A-Za-z0-9_-]{1,1024})\.([A-Za-z0-9_-]{86})$/;
const PAYLOAD_MEMBERS = ['v', 'kid', 'nonce', 'ts', 'routine'];
/** Expired nonces are swept at most this often when the cache is full (a sweep is O(size)). */
const FULL_SWEEP_INTERVAL_MS = 1000;

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function intOption(raw: Record<string, unknown>, key: string, min: number, max: number, dflt: number, fail: OptionsFail): number {
  const v = raw[key];
  if (v === undefined) return dflt;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
    throw fail(key, `must be an integer between ${min} and ${max}, got ${JSON.stringify(v)}`);
  }
  return v;
}

function parseOptions(raw: unknown, fail: OptionsFail): SignedNonceOptions {
  if (raw === undefined) throw fail('keys', 'is required: { "<name>": "ed25519:<base64url>" }');
  if (!isPlainObject(raw)) throw fail('options', 'must be an object with "keys"');
  const unknown = Object.keys(raw).filter((k) => !['keys', 'windowSec', 'maxNonces'].includes(k));
  if (unknown.length > 0) throw fail(unknown[0]!, `unknown option (known: keys, windowSec, maxNonces)`);
  const keys = raw.keys;
  if (keys === undefined) throw fail('keys', 'is required: { "<name>": "ed25519:<base64url>" }');
  if (!isPlainObject(keys)) throw fail('keys', 'must be an object mapping key names to "ed25519:<base64url>" public keys');
  const names = Object.keys(keys);
  if (names.length === 0) throw fail('keys', 'must name at least one key');
  if (names.length > 1000) throw fail('keys', `at most 1000 keys, got ${names.length}`);
  const out: Record<string, string> = {};
  const seen = new Map<string, string>();
  for (const name of names) {
    if (!KEY_NAME.test(name)) throw fail(`keys.${name}`, 'key name must be 1-64 of A-Z a-z 0-9 _ . @ -');
    const text = keys[name];
    if (typeof text !== 'string' || !KEY_TEXT.test(text.trim())) {
      throw fail(`keys.${name}`, 'must be an "ed25519:<base64url>" public key (the .pub file skein keygen writes)');
    }
    const key = text.trim();
    const other = seen.get(key);
    if (other !== undefined) throw fail(`keys.${name}`, `is the same key as keys.${other}: one key, one identity`);
    seen.set(key, name);
    out[name] = key;
  }
  return {
    keys: out,
    windowSec: intOption(raw, 'windowSec', 1, 3600, 60, fail),
    maxNonces: intOption(raw, 'maxNonces', 1, 10_000_000, 100_000, fail),
  };
}

// RFC 4648 §5 base64url without padding, strict: the caller has checked the alphabet; a
// length of 1 mod 4 or non-zero padding bits make the text non-canonical and it is refused.
const B64URL = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
const B64URL_VALUE = new Map([...B64URL].map((c, i) => [c, i]));

function base64urlDecode(text: string): Uint8Array | undefined {
  if (text.length % 4 === 1) return undefined;
  const out = new Uint8Array(Math.floor((text.length * 3) / 4));
  let acc = 0;
  let bits = 0;
  let n = 0;
  for (const c of text) {
    const v = B64URL_VALUE.get(c);
    if (v === undefined) return undefined;
    acc = (acc << 6) | v;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out[n++] = (acc >> bits) & 0xff;
    }
    acc &= (1 << bits) - 1;
  }
  if (acc !== 0) return undefined; // non-zero padding bits
  return out;
}

interface Payload {
  kid: string;
  nonce: string;
  ts: number;
  routine: string;
}

const utf8 = new TextDecoder('utf-8', { fatal: true });
const ascii = new TextEncoder();

function parsePayload(bytes: Uint8Array): Payload | string {
  let value: unknown;
  try {
    value = JSON.parse(utf8.decode(bytes));
  } catch {
    return 'payload is not UTF-8 JSON';
  }
  if (!isPlainObject(value)) return 'payload is not a JSON object';
  const members = Object.keys(value);
  if (members.length !== PAYLOAD_MEMBERS.length || !PAYLOAD_MEMBERS.every((m) => members.includes(m))) {
    return `payload must have exactly the members ${PAYLOAD_MEMBERS.join(', ')}`;
  }
  const { v, kid, nonce, ts, routine } = value;
  if (v !== 1) return `unsupported token version ${JSON.stringify(v)}`;
  if (typeof kid !== 'string' || !KID.test(kid)) return 'kid must be 16 lower-case hex characters';
  if (typeof nonce !== 'string' || !NONCE.test(nonce)) return 'nonce must be 32 lower-case hex characters';
  if (typeof ts !== 'number' || !Number.isSafeInteger(ts) || ts < 0) return 'ts must be a non-negative integer of milliseconds';
  if (typeof routine !== 'string' || routine.length === 0 || routine.length > 64) return 'routine must be a routine name';
  return { kid, nonce, ts, routine };
}

function reject(reason: string, message: string): AuthnResult {
  return { outcome: 'rejected', reason, message };
}

export default definePlugin<SignedNonceOptions>({
  name: 'signed-nonce',
  version: '1.0.0',
  options: parseOptions,
  setup(ctx) {
    const { windowSec, maxNonces } = ctx.options;
    const windowMs = windowSec * 1000;
    // kid → configured key. Ids are computed exactly as signing/keys.ts keyId() does.
    const byKid = new Map<string, { name: string; raw: Uint8Array }>();
    for (const [name, text] of Object.entries(ctx.options.keys)) {
      let raw: Uint8Array;
      try {
        raw = ctx.crypto.parseEd25519PublicKey(text);
      } catch (err) {
        throw new Error(`keys.${name}: ${(err as Error).message}`, { cause: err });
      }
      const kid = ctx.crypto.sha256Hex(raw).slice(0, 16);
      const other = byKid.get(kid);
      if (other) throw new Error(`keys.${name}: has the same key id ${kid} as keys.${other.name}`);
      byKid.set(kid, { name, raw });
    }

    // Replay cache: "<kid>.<nonce>" → the time (ms) after which the token is stale anyway.
    const seen = new Map<string, number>();
    let lastSweep = ctx.now();
    let lastFullWarning = -Infinity;
    const sweep = (now: number) => {
      for (const [nonce, expiry] of seen) if (expiry < now) seen.delete(nonce);
      lastSweep = now;
    };

    return {
      authenticate(req: AuthnRequest): AuthnResult {
        const header = req.headers.authorization;
        if (header === undefined) return { outcome: 'skip' };
        const value = header.trim();
        const space = value.indexOf(' ');
        // Auth schemes are case-insensitive (RFC 9110 §11.1); other schemes are someone else's.
        if ((space < 0 ? value : value.slice(0, space)).toLowerCase() !== SCHEME) return { outcome: 'skip' };
        const token = space < 0 ? '' : value.slice(space + 1).trim();

        const m = TOKEN.exec(token);
        if (!m) return reject('NONCE_MALFORMED', 'expected "SkeinNonce <base64url payload>.<base64url signature>"');
        const payloadText = m[1]!;
        const payloadBytes = base64urlDecode(payloadText);
        const sig = base64urlDecode(m[2]!);
        if (!payloadBytes || !sig || sig.length !== 64) return reject('NONCE_MALFORMED', 'payload or signature is not canonical base64url');
        const payload = parsePayload(payloadBytes);
        if (typeof payload === 'string') return reject('NONCE_MALFORMED', payload);

        const key = byKid.get(payload.kid);
        if (!key) return reject('NONCE_UNKNOWN_KEY', `key id ${payload.kid} is not configured`);
        if (!ctx.crypto.verifyEd25519(key.raw, ascii.encode(CONTEXT + payloadText), sig)) {
          return reject('NONCE_BAD_SIGNATURE', `signature does not verify with key "${key.name}"`);
        }

        const now = ctx.now();
        if (Math.abs(now - payload.ts) > windowMs) {
          return reject('NONCE_STALE', `token time is ${Math.round((now - payload.ts) / 1000)} s from now; the window is ±${windowSec} s`);
        }
        if (payload.routine !== req.routine) {
          return reject(
            'NONCE_WRONG_ROUTINE',
            req.routine === undefined ? `token is for routine "${payload.routine}", not for ${req.path}` : `token is for routine "${payload.routine}", not "${req.routine}"`,
          );
        }

        const id = `${payload.kid}.${payload.nonce}`;
        const expiry = seen.get(id);
        if (expiry !== undefined && expiry >= now) return reject('NONCE_REPLAYED', 'this token was already used');
        if (now - lastSweep > windowMs) sweep(now);
        if (seen.size >= maxNonces && now - lastSweep >= FULL_SWEEP_INTERVAL_MS) sweep(now);
        if (seen.size >= maxNonces) {
          if (now - lastFullWarning >= windowMs) {
            lastFullWarning = now; // once per window, not once per refused request
            ctx.log.warn('replay cache full: refusing nonce tokens until remembered nonces expire (raise maxNonces?)', { maxNonces, windowSec });
          }
          return reject('NONCE_CACHE_FULL', `${maxNonces} unexpired nonces are remembered; retry shortly`);
        }
        seen.delete(id); // an expired entry for the same id moves to the end
        seen.set(id, payload.ts + windowMs);
        return { outcome: 'authenticated', identity: `nonce:${key.name}`, claims: { kid: payload.kid, routine: payload.routine, ts: payload.ts } };
      },
    };
  },
});
