import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { runKeygen } from '../../agent/cli/keygen.ts';
import { keyId, readPrivateKey, readPublicKey } from '../../signing/index.ts';
import { expectCode, memoryIo, removeTempDirs, tempDir } from './io.ts';

afterAll(removeTempDirs);

const mode = (path: string) => statSync(path).mode & 0o777;

describe('skein keygen', () => {
  it('writes the private key 0600 and PATH.pub, and prints the public key and key id', async () => {
    const out = join(tempDir(), 'release.key');
    const t = memoryIo();
    expect(await runKeygen(['--out', out], t.io)).toBe(0);

    expect(mode(out)).toBe(0o600);
    const pubLine = readFileSync(`${out}.pub`, 'utf8');
    expect(pubLine).toMatch(/^ed25519:[A-Za-z0-9_-]{43}\n$/);
    const pair = readPrivateKey(out);
    expect(keyId(readPublicKey(pubLine))).toBe(pair.keyId);

    const printed = t.text();
    expect(printed).toContain(pubLine.trim());
    expect(printed).toContain(pair.keyId);
    expect(printed).toContain(`${out}.pub`);
  });

  it('refuses to overwrite an existing key without --force, leaving it intact', async () => {
    const out = join(tempDir(), 'release.key');
    expect(await runKeygen(['--out', out], memoryIo().io)).toBe(0);
    const before = readFileSync(out, 'utf8');
    const beforePub = readFileSync(`${out}.pub`, 'utf8');

    const err = await expectCode(() => runKeygen(['--out', out], memoryIo().io), 'SKEIN_ERR_SIG_KEY_EXISTS');
    expect(err.exitCode).toBe(2);
    expect(err.message).toMatch(/--force/);
    expect(readFileSync(out, 'utf8')).toBe(before);
    expect(readFileSync(`${out}.pub`, 'utf8')).toBe(beforePub);
  });

  it('replaces the key pair with --force', async () => {
    const out = join(tempDir(), 'release.key');
    await runKeygen(['--out', out], memoryIo().io);
    const before = readPrivateKey(out).keyId;
    expect(await runKeygen(['--out', out, '--force'], memoryIo().io)).toBe(0);
    const after = readPrivateKey(out);
    expect(after.keyId).not.toBe(before);
    expect(mode(out)).toBe(0o600);
    expect(keyId(readPublicKey(`${out}.pub`))).toBe(after.keyId);
  });

  it('also refuses a file that is not a key (never clobbers)', async () => {
    const out = join(tempDir(), 'notes.txt');
    writeFileSync(out, 'keep me');
    await expectCode(() => runKeygen(['--out', out], memoryIo().io), 'SKEIN_ERR_SIG_KEY_EXISTS');
    expect(readFileSync(out, 'utf8')).toBe('keep me');
  });

  it('prints usage for --help', async () => {
    const t = memoryIo();
    expect(await runKeygen(['--help'], t.io)).toBe(0);
    expect(t.text()).toMatch(/^Usage: skein keygen --out PATH/);
    // What the key is for: every use, with the config key that trusts its public half.
    for (const use of ['plugins.trustedKeys', 'discovery.signingKey', 'discovery.trustedKeys', 'discovery.rootKeys', 'skein token sign-nonce']) expect(t.text()).toContain(use);
  });

  it('says what to do next for each use of the key', async () => {
    const out = join(tempDir(), 'edge.key');
    const t = memoryIo();
    expect(await runKeygen(['--out', out], t.io)).toBe(0);
    expect(t.text()).toContain(`plugin signing  add the public key to plugins.trustedKeys, then: skein plugin sign FILE --key ${out}`);
    expect(t.text()).toContain(`discovery       set discovery.signingKey to ${out} on this agent`);
    expect(t.text()).toContain(`fleet root      add the public key to discovery.rootKeys`);
  });

  it.each([
    [[], /--out/],
    [['--out', ''], /--out/],
    [['--out'], /--out/],
    [['--bogus'], /bogus/],
  ])('%j is a usage error', async (argv, message) => {
    const err = await expectCode(() => runKeygen(argv, memoryIo().io), 'SKEIN_ERR_USAGE');
    expect(err.message).toMatch(message);
  });
});
