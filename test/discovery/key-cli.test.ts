import { chmodSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parseNotAfter, runKey } from '../../agent/cli/key.ts';
import { encodeAdvert } from '../../agent/discovery/advert.ts';
import { verifyEndorsement } from '../../agent/discovery/endorse.ts';
import { createAdvertVerifier } from '../../agent/discovery/verifier.ts';
import { formatPublicKey, writeKeyPair } from '../../signing/index.ts';
import { expectCode, memoryIo, removeTempDirs, tempDir } from '../cli-plugins/io.ts';
import { NOW, expectAccepted, payload } from './helpers.ts';

afterAll(removeTempDirs);

const SPIFFE = 'spiffe://skein.local/agent/a1';
const clock = () => NOW;

function keys() {
  const dir = tempDir('skein-key-cli-');
  const rootPath = join(dir, 'root.key');
  const agentPath = join(dir, 'agent.key');
  return { dir, rootPath, agentPath, root: writeKeyPair(rootPath), agent: writeKeyPair(agentPath) };
}

const endorseArgs = (k: ReturnType<typeof keys>, over: Record<string, string> = {}) => {
  const flags: Record<string, string> = { root: k.rootPath, 'agent-pub': `${k.agentPath}.pub`, 'spiffe-id': SPIFFE, 'not-after': '2027-06-30T00:00:00Z', out: join(k.dir, 'a1.endorsement'), ...over };
  return ['endorse', ...Object.entries(flags).flatMap(([f, v]) => [`--${f}`, v])];
};

describe('skein key endorse', () => {
  it("writes an endorsement that verifies against the root and makes the agent's adverts trusted", async () => {
    const k = keys();
    const t = memoryIo();
    expect(await runKey(endorseArgs(k), t.io, clock)).toBe(0);
    const out = join(k.dir, 'a1.endorsement');
    expect(statSync(out).mode & 0o777).toBe(0o644);
    const bytes = readFileSync(out);
    const notAfter = Date.parse('2027-06-30T00:00:00Z');
    expect(verifyEndorsement(bytes, new Map([[k.root.keyId, k.root.publicKey]]), NOW)).toMatchObject({ ok: true, agentKeyId: k.agent.keyId, spiffe: SPIFFE, notAfter });
    const printed = t.text();
    for (const s of [k.agent.keyId, formatPublicKey(k.agent.publicKey), SPIFFE, '2027-06-30T00:00:00.000Z', k.root.keyId, out, `${bytes.length} bytes`, 'discovery.rootKeys', 'discovery.endorsement'])
      expect(printed).toContain(s);
    // End to end: a verifier that trusts only the root accepts the agent's advert carrying it.
    const v = createAdvertVerifier({ fleet: 'prod', rootKeys: [formatPublicKey(k.root.publicKey)], now: clock });
    expectAccepted(v, encodeAdvert(payload(), k.agent, bytes));
  });

  it('takes the agent key as ed25519: text and the expiry as unix ms', async () => {
    const k = keys();
    const out = join(k.dir, 'x.endorsement');
    expect(await runKey(endorseArgs(k, { 'agent-pub': formatPublicKey(k.agent.publicKey), 'not-after': String(NOW + 5000), out }), memoryIo().io, clock)).toBe(0);
    expect(verifyEndorsement(readFileSync(out), new Map([[k.root.keyId, k.root.publicKey]]), NOW)).toMatchObject({ ok: true, notAfter: NOW + 5000 });
  });

  it('refuses to overwrite without --force; replaces with it', async () => {
    const k = keys();
    const out = join(k.dir, 'a1.endorsement');
    writeFileSync(out, 'keep me');
    const err = await expectCode(() => runKey(endorseArgs(k), memoryIo().io, clock), 'SKEIN_ERR_USAGE');
    expect(err.message).toMatch(/--force/);
    expect(readFileSync(out, 'utf8')).toBe('keep me');
    expect(await runKey([...endorseArgs(k), '--force'], memoryIo().io, clock)).toBe(0);
    expect(readFileSync(out, 'utf8')).not.toBe('keep me');
  });

  it('usage errors name the flag', async () => {
    const k = keys();
    const cases: [string[], RegExp][] = [
      [[], /missing key command/],
      [['rotate'], /unknown key command "rotate"/],
      [['endorse', '--root', k.rootPath], /--agent-pub is required/],
      [endorseArgs(k, { 'spiffe-id': 'spiffe://no-path' }), /--spiffe-id .* is not a SPIFFE ID/],
      [endorseArgs(k, { 'not-after': 'next tuesday' }), /--not-after must be ISO 8601/],
      [endorseArgs(k, { 'not-after': '2027-01-15T00:00:00' }), /--not-after must be ISO 8601 with a zone/],
      [endorseArgs(k, { 'not-after': String(NOW - 1) }), /in the past/],
      [endorseArgs(k, { out: '' }), /--out must not be empty/],
      [endorseArgs(k, { 'agent-pub': `${k.rootPath}.pub` }), /the agent key is the root key/],
      [[...endorseArgs(k), '--bogus'], /bogus/],
    ];
    for (const [argv, msg] of cases) {
      const err = await expectCode(() => runKey(argv, memoryIo().io, clock), 'SKEIN_ERR_USAGE');
      expect(err.message).toMatch(msg);
    }
    await expectCode(() => runKey(endorseArgs(k, { 'agent-pub': 'ed25519:short' }), memoryIo().io, clock), 'SKEIN_ERR_SIG_KEY_INVALID');
  });

  it('refuses a root key readable by others', async () => {
    const k = keys();
    chmodSync(k.rootPath, 0o644);
    await expectCode(() => runKey(endorseArgs(k), memoryIo().io, clock), 'SKEIN_ERR_SIG_KEY_PERMISSIONS');
  });

  it('--help for key and key endorse', async () => {
    for (const argv of [['--help'], ['endorse', '--help'], ['inspect', '--help']]) {
      const t = memoryIo();
      expect(await runKey(argv, t.io, clock)).toBe(0);
      expect(t.text()).toMatch(/^Usage: skein key/);
    }
  });
});

describe('skein key inspect', () => {
  it('prints the endorsement, flagging an expired one', async () => {
    const k = keys();
    await runKey(endorseArgs(k, { 'not-after': String(NOW + 1000) }), memoryIo().io, clock);
    const file = join(k.dir, 'a1.endorsement');
    const t = memoryIo();
    expect(await runKey(['inspect', file], t.io, clock)).toBe(0);
    expect(t.text()).toContain(k.agent.keyId);
    expect(t.text()).toContain(SPIFFE);
    expect(t.text()).not.toContain('EXPIRED');
    const later = memoryIo();
    await runKey(['inspect', file], later.io, () => NOW + 1001);
    expect(later.text()).toContain('EXPIRED');
    writeFileSync(join(k.dir, 'junk'), 'junk');
    await expectCode(() => runKey(['inspect', join(k.dir, 'junk')], memoryIo().io, clock), 'SKEIN_ERR_CONFIG');
    await expectCode(() => runKey(['inspect'], memoryIo().io, clock), 'SKEIN_ERR_USAGE');
  });

  it('parseNotAfter', () => {
    expect(parseNotAfter('2027-01-15')).toBe(Date.parse('2027-01-15'));
    expect(parseNotAfter('2027-01-15T10:00:00+02:00')).toBe(Date.parse('2027-01-15T08:00:00Z'));
    expect(parseNotAfter('1800000000000')).toBe(1_800_000_000_000);
  });
});
