/**
 * Signed nonce tokens end to end without a server: signing/nonce.ts mints (its byte format
 * checked against tweetnacl, an independent Ed25519), `skein token sign-nonce` prints, and the
 * signed-nonce plugin accepts once, for one routine, within its window — or says why not.
 */
import { sign as edSign } from 'node:crypto';
import { chmodSync } from 'node:fs';
import { join } from 'node:path';
import nacl from 'tweetnacl';
import { describe, expect, it } from 'vitest';
import plugin from '../../plugins/signed-nonce.ts';
import { runToken } from '../../agent/cli/token.ts';
import { formatPublicKey, generateKeyPair, NONCE_CONTEXT, signNonceToken, writeKeyPair, type KeyPair } from '../../signing/index.ts';
import type { AuthnResult, Hooks } from '../../agent/plugin-host/api.ts';
import { authnRequest, optionsError, setupPlugin, tempDir, type Clock } from './helpers.ts';

const NOW = 1_750_000_000_000;
const bot = generateKeyPair();
const ci = generateKeyPair();
const stranger = generateKeyPair();

async function hooks(extra: Record<string, unknown> = {}, clock: Clock = { now: NOW }): Promise<Hooks> {
  return setupPlugin(plugin, { keys: { 'deploy-bot': formatPublicKey(bot.publicKey), ci: formatPublicKey(ci.publicKey) }, ...extra }, clock);
}

async function authn(h: Hooks, authorization: string | undefined, routine: string | null = 'echo'): Promise<AuthnResult> {
  return h.authenticate!(authnRequest({ authorization }, routine));
}

function reasonOf(r: AuthnResult): string {
  return r.outcome === 'rejected' ? r.reason : r.outcome;
}

/** A token with an arbitrary payload text, signed by `key` under the nonce context. */
function handMade(payloadJson: string, key: KeyPair = bot): string {
  const payload = Buffer.from(payloadJson).toString('base64url');
  const sig = edSign(null, Buffer.from(NONCE_CONTEXT + payload), key.privateKey).toString('base64url');
  return `SkeinNonce ${payload}.${sig}`;
}

describe('signNonceToken: the byte format', () => {
  it('is "SkeinNonce <b64url JSON>.<b64url Ed25519 over skein-nonce-v1.<payload>>", verifiable by tweetnacl', () => {
    const nonce = '00112233445566778899aabbccddeeff';
    const token = signNonceToken(bot, 'echo', { now: NOW, nonce });
    const m = /^SkeinNonce ([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]{86})$/.exec(token);
    expect(m).not.toBeNull();
    const [, payload, sig] = m as unknown as [string, string, string];
    expect(Buffer.from(payload, 'base64url').toString('utf8')).toBe(`{"v":1,"kid":"${bot.keyId}","nonce":"${nonce}","ts":${NOW},"routine":"echo"}`);
    const message = new TextEncoder().encode(`skein-nonce-v1.${payload}`);
    expect(nacl.sign.detached.verify(message, Buffer.from(sig, 'base64url'), bot.publicKey)).toBe(true);
    // Deterministic (Ed25519): same inputs, same token.
    expect(signNonceToken(bot, 'echo', { now: NOW, nonce })).toBe(token);
  });

  it('draws a fresh 16-byte nonce each time', () => {
    const nonces = new Set(Array.from({ length: 50 }, () => JSON.parse(Buffer.from(signNonceToken(bot, 'echo').split(/[ .]/)[1]!, 'base64url').toString()).nonce));
    expect(nonces.size).toBe(50);
    for (const n of nonces) expect(n).toMatch(/^[0-9a-f]{32}$/);
  });

  it('refuses bad routine names, nonces, times and mismatched key ids', () => {
    expect(() => signNonceToken(bot, 'no spaces')).toThrow(expect.objectContaining({ code: 'SKEIN_ERR_SIG_UNENCODABLE' }));
    expect(() => signNonceToken(bot, 'echo', { nonce: 'ABC' })).toThrow(/32 lower-case hex/);
    expect(() => signNonceToken(bot, 'echo', { now: 1.5 })).toThrow(/integer/);
    expect(() => signNonceToken({ privateKey: bot.privateKey, keyId: ci.keyId }, 'echo')).toThrow(expect.objectContaining({ code: 'SKEIN_ERR_SIG_KEY_INVALID' }));
  });
});

describe('signed-nonce plugin', () => {
  it('a valid token → nonce:<key name> with { kid, routine, ts }', async () => {
    const h = await hooks();
    expect(await authn(h, signNonceToken(bot, 'echo', { now: NOW }))).toEqual({
      outcome: 'authenticated',
      identity: 'nonce:deploy-bot',
      claims: { kid: bot.keyId, routine: 'echo', ts: NOW },
    });
    expect(await authn(h, signNonceToken(ci, 'echo', { now: NOW - 59_000 }))).toMatchObject({ identity: 'nonce:ci' });
  });

  it('replayed → NONCE_REPLAYED (also with the scheme in another case)', async () => {
    const h = await hooks();
    const token = signNonceToken(bot, 'echo', { now: NOW });
    expect(reasonOf(await authn(h, token))).toBe('authenticated');
    expect(reasonOf(await authn(h, token))).toBe('NONCE_REPLAYED');
    expect(reasonOf(await authn(h, token.replace('SkeinNonce', 'skeinnonce')))).toBe('NONCE_REPLAYED');
  });

  it('stale → NONCE_STALE: too old, too far in the future, and the same token once time moves', async () => {
    const clock = { now: NOW };
    const h = await hooks({ windowSec: 60 }, clock);
    expect(reasonOf(await authn(h, signNonceToken(bot, 'echo', { now: NOW - 60_001 })))).toBe('NONCE_STALE');
    expect(reasonOf(await authn(h, signNonceToken(bot, 'echo', { now: NOW + 60_001 })))).toBe('NONCE_STALE');
    const token = signNonceToken(bot, 'echo', { now: NOW });
    clock.now = NOW + 61_000;
    const r = await authn(h, token);
    expect(r).toMatchObject({ outcome: 'rejected', reason: 'NONCE_STALE' });
    expect((r as { message: string }).message).toMatch(/61 s from now; the window is ±60 s/);
  });

  it('a replay stays refused for the whole window, and is stale after it', async () => {
    const clock = { now: NOW };
    const h = await hooks({ windowSec: 10 }, clock);
    const token = signNonceToken(bot, 'echo', { now: NOW + 5_000 }); // signed by a clock 5 s ahead
    expect(reasonOf(await authn(h, token))).toBe('authenticated');
    clock.now = NOW + 15_000; // ts + window: the last moment the token is fresh
    expect(reasonOf(await authn(h, token))).toBe('NONCE_REPLAYED');
    clock.now = NOW + 15_001;
    expect(reasonOf(await authn(h, token))).toBe('NONCE_STALE');
  });

  it('wrong routine → NONCE_WRONG_ROUTINE (and a non-dispatch request is no routine)', async () => {
    const h = await hooks();
    const token = signNonceToken(bot, 'echo', { now: NOW });
    const r = await authn(h, token, 'add');
    expect(r).toMatchObject({ outcome: 'rejected', reason: 'NONCE_WRONG_ROUTINE' });
    expect((r as { message: string }).message).toBe('token is for routine "echo", not "add"');
    expect(reasonOf(await authn(h, token, null))).toBe('NONCE_WRONG_ROUTINE');
    // A rejected token did not burn its nonce: it still works for its own routine.
    expect(reasonOf(await authn(h, token, 'echo'))).toBe('authenticated');
  });

  it('a key that is not configured → NONCE_UNKNOWN_KEY', async () => {
    const h = await hooks();
    expect(reasonOf(await authn(h, signNonceToken(stranger, 'echo', { now: NOW })))).toBe('NONCE_UNKNOWN_KEY');
  });

  it('a configured kid with a signature by another key, or an edited payload → NONCE_BAD_SIGNATURE', async () => {
    const h = await hooks();
    const forged = handMade(JSON.stringify({ v: 1, kid: bot.keyId, nonce: 'ab'.repeat(16), ts: NOW, routine: 'echo' }), stranger);
    expect(reasonOf(await authn(h, forged))).toBe('NONCE_BAD_SIGNATURE');
    const [, payload, sig] = signNonceToken(bot, 'echo', { now: NOW }).split(/[ .]/) as [string, string, string];
    const edited = Buffer.from(Buffer.from(payload, 'base64url').toString().replace('"echo"', '"add"')).toString('base64url');
    expect(reasonOf(await authn(h, `SkeinNonce ${edited}.${sig}`, 'add'))).toBe('NONCE_BAD_SIGNATURE');
    // A signature over the payload without the context prefix does not verify either.
    const noContext = edSign(null, Buffer.from(payload), bot.privateKey).toString('base64url');
    expect(reasonOf(await authn(h, `SkeinNonce ${payload}.${noContext}`))).toBe('NONCE_BAD_SIGNATURE');
  });

  it('malformed → NONCE_MALFORMED', async () => {
    const h = await hooks();
    const good = { v: 1, kid: bot.keyId, nonce: 'cd'.repeat(16), ts: NOW, routine: 'echo' };
    const sig = 'A'.repeat(86);
    const cases = [
      'SkeinNonce',
      'SkeinNonce ',
      'SkeinNonce garbage',
      `SkeinNonce abc.${sig}`.replace(sig, 'short'),
      `SkeinNonce a!b.${sig}`,
      `SkeinNonce ${'A'.repeat(2000)}.${sig}`,
      `SkeinNonce ${Buffer.from('not json').toString('base64url')}.${sig}`,
      `SkeinNonce ${Buffer.from('{"v":1}').toString('base64url')}.${sig}`,
      `SkeinNonce ${Buffer.from([0xff, 0xfe]).toString('base64url')}.${sig}`,
      `SkeinNonce ${Buffer.from(JSON.stringify(good)).toString('base64url')}.${'A'.repeat(85)}B`, // non-zero padding bits
      handMade(JSON.stringify({ ...good, v: 2 })),
      handMade(JSON.stringify({ ...good, extra: true })),
      handMade(JSON.stringify({ ...good, kid: bot.keyId.toUpperCase() })),
      handMade(JSON.stringify({ ...good, nonce: 'short' })),
      handMade(JSON.stringify({ ...good, ts: String(NOW) })),
      handMade(JSON.stringify({ ...good, ts: NOW + 0.5 })),
      handMade(JSON.stringify({ ...good, routine: 7 })),
      handMade(JSON.stringify([good])),
    ];
    for (const header of cases) {
      expect(reasonOf(await authn(h, header)), header.slice(0, 60)).toBe('NONCE_MALFORMED');
    }
  });

  it('no authorization header or another scheme → skip', async () => {
    const h = await hooks();
    expect(await authn(h, undefined)).toEqual({ outcome: 'skip' });
    expect(await authn(h, 'Bearer eyJ.x.y')).toEqual({ outcome: 'skip' });
    expect(await authn(h, 'SkeinNonceX abc')).toEqual({ outcome: 'skip' });
  });

  it('cache full → NONCE_CACHE_FULL until remembered nonces expire; nothing unexpired is forgotten', async () => {
    const clock = { now: NOW };
    const h = await hooks({ windowSec: 10, maxNonces: 2 }, clock);
    const first = signNonceToken(bot, 'echo', { now: NOW });
    expect(reasonOf(await authn(h, first))).toBe('authenticated');
    expect(reasonOf(await authn(h, signNonceToken(bot, 'echo', { now: NOW })))).toBe('authenticated');
    const third = signNonceToken(bot, 'echo', { now: NOW });
    const r = await authn(h, third);
    expect(r).toMatchObject({ outcome: 'rejected', reason: 'NONCE_CACHE_FULL' });
    clock.now = NOW + 5_000; // still within the window: nothing may be forgotten
    expect(reasonOf(await authn(h, signNonceToken(bot, 'echo', { now: clock.now })))).toBe('NONCE_CACHE_FULL');
    expect(reasonOf(await authn(h, first))).toBe('NONCE_REPLAYED');
    clock.now = NOW + 10_001; // the first two are stale now: their slots are free
    expect(reasonOf(await authn(h, signNonceToken(bot, 'echo', { now: clock.now })))).toBe('authenticated');
    expect(reasonOf(await authn(h, signNonceToken(bot, 'echo', { now: clock.now })))).toBe('authenticated');
    expect(reasonOf(await authn(h, signNonceToken(bot, 'echo', { now: clock.now })))).toBe('NONCE_CACHE_FULL');
  });

  it('remembers many nonces and forgets them once stale (periodic sweep)', async () => {
    const clock = { now: NOW };
    const h = await hooks({ windowSec: 1, maxNonces: 1000 }, clock);
    for (let round = 0; round < 5; round++) {
      for (let i = 0; i < 900; i++) expect(reasonOf(await authn(h, signNonceToken(ci, 'echo', { now: clock.now })))).toBe('authenticated');
      clock.now += 1_001;
    }
  });

  describe('options validation names the key', () => {
    const key = formatPublicKey(bot.publicKey);
    const cases: Array<[string, unknown, RegExp]> = [
      ['no options', undefined, /^keys: is required/],
      ['not an object', [key], /^options: must be an object/],
      ['keys missing', { windowSec: 60 }, /^keys: is required/],
      ['unknown option', { keys: { bot: key }, windowSecs: 60 }, /^windowSecs: unknown option/],
      ['keys a list', { keys: [key] }, /^keys: must be an object/],
      ['no keys', { keys: {} }, /^keys: must name at least one key/],
      ['bad key text', { keys: { bot: 'ssh-ed25519 AAAA' } }, /^keys\.bot: must be an "ed25519:<base64url>" public key/],
      ['bad key name', { keys: { 'bad name': key } }, /^keys\.bad name: key name must be/],
      ['same key twice', { keys: { a: key, b: key } }, /^keys\.b: is the same key as keys\.a/],
      ['window 0', { keys: { bot: key }, windowSec: 0 }, /^windowSec: must be an integer between 1 and 3600, got 0/],
      ['maxNonces text', { keys: { bot: key }, maxNonces: '10' }, /^maxNonces: must be an integer between 1 and 10000000/],
    ];
    for (const [what, raw, expected] of cases) {
      it(what, () => {
        expect(optionsError(plugin, raw)).toMatch(expected);
      });
    }

    it('defaults: windowSec 60, maxNonces 100000', () => {
      expect(plugin.options!({ keys: { bot: key } }, (k, m) => new Error(`${k}: ${m}`))).toEqual({ keys: { bot: key }, windowSec: 60, maxNonces: 100_000 });
    });

    it('a key with non-canonical base64url is refused at setup, naming it', async () => {
      const raw = formatPublicKey(bot.publicKey);
      // Flip the last character's unused low bits: same 32 bytes, another spelling.
      const last = raw.at(-1)!;
      const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
      const twin = raw.slice(0, -1) + alphabet[alphabet.indexOf(last) ^ 1];
      await expect(setupPlugin(plugin, { keys: { twin } })).rejects.toThrow(/^keys\.twin: /);
    });
  });
});

describe('skein token sign-nonce', () => {
  function io() {
    const out: string[] = [];
    const err: string[] = [];
    return { out, err, io: { out: (s: string) => void out.push(s), err: (s: string) => void err.push(s) } };
  }

  it('prints a token the plugin accepts, for that routine only', async () => {
    const dir = tempDir();
    const pair = writeKeyPair(join(dir, 'deploy.key'));
    const o = io();
    expect(await runToken(['sign-nonce', '--key', join(dir, 'deploy.key'), '--routine', 'report.daily'], o.io)).toBe(0);
    expect(o.out).toHaveLength(1);
    const token = o.out[0]!;
    expect(token).toMatch(/^SkeinNonce [A-Za-z0-9_-]+\.[A-Za-z0-9_-]{86}$/);
    const h = await setupPlugin(plugin, { keys: { deploy: formatPublicKey(pair.publicKey) } }, { now: Date.now() });
    expect(await h.authenticate!(authnRequest({ authorization: token }, 'report.daily'))).toMatchObject({ outcome: 'authenticated', identity: 'nonce:deploy' });
    expect(await h.authenticate!(authnRequest({ authorization: token }, 'report.daily'))).toMatchObject({ reason: 'NONCE_REPLAYED' });
  });

  it('refuses a key that group or others can read', async () => {
    const dir = tempDir();
    writeKeyPair(join(dir, 'loose.key'));
    chmodSync(join(dir, 'loose.key'), 0o644);
    await expect(runToken(['sign-nonce', '--key', join(dir, 'loose.key'), '--routine', 'echo'], io().io)).rejects.toMatchObject({ code: 'SKEIN_ERR_SIG_KEY_PERMISSIONS' });
  });

  it('usage errors and help', async () => {
    const usage = expect.objectContaining({ code: 'SKEIN_ERR_USAGE' });
    await expect(runToken([], io().io)).rejects.toThrow(/missing token command/);
    await expect(runToken(['mint'], io().io)).rejects.toThrow(/unknown token command "mint"/);
    await expect(runToken(['sign-nonce', '--routine', 'echo'], io().io)).rejects.toThrow(/--key is required/);
    await expect(runToken(['sign-nonce', '--key', 'k'], io().io)).rejects.toThrow(/--routine is required/);
    await expect(runToken(['sign-nonce', '--key', 'k', '--routine', 'a b'], io().io)).rejects.toEqual(usage);
    await expect(runToken(['sign-nonce', '--key', 'k', '--routine', 'echo', '--bogus'], io().io)).rejects.toEqual(usage);
    const o = io();
    expect(await runToken(['sign-nonce', '--help'], o.io)).toBe(0);
    expect(o.out.join('\n')).toMatch(/--routine NAME/);
    const p = io();
    expect(await runToken(['--help'], p.io)).toBe(0);
    expect(p.out.join('\n')).toMatch(/sign-nonce/);
  });
});
