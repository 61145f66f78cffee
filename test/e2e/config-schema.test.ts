/**
 * The published JSON Schema (docs/config.schema.json) and `skein validate` agree: an
 * independent validator (Debian's python3-jsonschema, Draft 2020-12) and the binary judge one
 * corpus of good and bad configs, cross-field rules included, and must give the same verdict
 * — except for the one rule JSON Schema cannot state (agent/config/json-rules.ts).
 */
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EXAMPLES, ROOT, runCli, stopAll, tempDir } from '../helpers/agent.ts';

afterAll(stopAll);

const KEY = `ed25519:${'A'.repeat(43)}`;
const routine = { file: EXAMPLES };
const discovery = { enabled: true, fleet: 'f', signingKey: 'agent.key', trustedKeys: [KEY] };

/** [name, config, valid?]; a string config is written as is. */
const CORPUS: Array<[string, unknown, boolean]> = [
  ['empty', {}, true],
  ['a routine from a file', { routines: { echo: routine } }, true],
  ['all three TLS files', { tls: { cert: 'a.crt', key: 'a.key', ca: 'ca.crt' } }, true],
  ['a routine from a pinned URL', { routines: { r: { url: 'https://code.example/r.py', sha256: 'a'.repeat(64) } } }, true],
  ['multicast discovery with a trust store', { discovery }, true],
  ['discovery with a root key instead', { discovery: { ...discovery, trustedKeys: [], rootKeys: [KEY] } }, true],
  ['static peers only: no fleet needed', { discovery: { enabled: true, groups: [] } }, true],
  ['a wildcard listener advertising an endpoint', { agent: { listen: '0.0.0.0:7443' }, discovery: { ...discovery, advertise: ['edge-1.example:7443'] } }, true],
  ['a wildcard listener without discovery', { agent: { listen: '0.0.0.0:7443' } }, true],
  ['the audit file sink with its path', { audit: { sink: 'file', path: '/var/log/skein/audit.jsonl' } }, true],
  ['admin off loopback with a token', { admin: { listen: '0.0.0.0:9100', token: 't'.repeat(20) } }, true],
  ['admin off loopback, disabled', { admin: { enabled: false, listen: '0.0.0.0:9100' } }, true],
  ['plaintext without discovery', { tls: { plaintext: true } }, true],
  ['port 65535', { agent: { listen: '127.0.0.1:65535' } }, true],
  ['JSONC: comments and a trailing comma', '{\n  // dev\n  "agent": { "name": "x", },\n}', true],
  ['sandbox profile "full"', { sandbox: { profile: 'full' } }, true],
  ['unknown key', { agnet: {} }, false],
  ['the former sandbox profile name "strict"', { sandbox: { profile: 'strict' } }, false],
  ['the removed sandbox.allowPrivateCodeAddresses', { sandbox: { allowPrivateCodeAddresses: true } }, false],
  ['wrong type', { workers: { poolSize: 'many' } }, false],
  ['a TLS certificate without key and CA', { tls: { cert: 'a.crt' } }, false],
  ['TLS key and CA without the certificate', { tls: { key: 'a.key', ca: 'ca.crt' } }, false],
  ['a routine with both file and url', { routines: { r: { ...routine, url: 'https://code.example/r.py', sha256: 'a'.repeat(64) } } }, false],
  ['a routine with neither file nor url', { routines: { r: { timeoutMs: 1000 } } }, false],
  ['a URL routine without its pin', { routines: { r: { url: 'https://code.example/r.py' } } }, false],
  ['a file routine with a pin', { routines: { r: { ...routine, sha256: 'a'.repeat(64) } } }, false],
  ['discovery without a fleet', { discovery: { ...discovery, fleet: undefined } }, false],
  ['discovery without a signing key', { discovery: { ...discovery, signingKey: undefined } }, false],
  ['discovery without a trust store', { discovery: { ...discovery, trustedKeys: [] } }, false],
  ['a wildcard listener with discovery and nothing to advertise', { agent: { listen: '0.0.0.0:7443' }, discovery }, false],
  ['the audit file sink without a path', { audit: { sink: 'file' } }, false],
  ['plaintext with discovery', { tls: { plaintext: true }, discovery }, false],
  ['admin off loopback without a token', { admin: { listen: '0.0.0.0:9100' } }, false],
  ['port 70000', { agent: { listen: '127.0.0.1:70000' } }, false],
  ['admin port 99999', { admin: { listen: '127.0.0.1:99999' } }, false],
];

/** The rule JSON Schema cannot state: the validator passes it, skein validate refuses it. */
const SCHEMA_CANNOT_SAY: Array<[string, unknown]> = [['a default deadline above the maximum', { limits: { defaultTimeoutMs: 10_000, maxTimeoutMs: 5_000 } }]];

const dir = tempDir();
const fileOf = (i: number, config: unknown) => {
  const path = join(dir, `c${i}.json`);
  writeFileSync(path, typeof config === 'string' ? config : JSON.stringify(config), { mode: 0o600 });
  return path;
};
const files = CORPUS.map(([, config], i) => fileOf(i, config));
const exceptionFiles = SCHEMA_CANNOT_SAY.map(([, config], i) => fileOf(1000 + i, config));
let verdicts: Record<string, string[]>;

beforeAll(() => {
  // One Python run judges every file: {path: [error messages]}.
  const script = `
import json, sys
from jsonschema import Draft202012Validator
sys.path = [p for p in sys.path if p]
schema = json.load(open(sys.argv[1]))
Draft202012Validator.check_schema(schema)
v = Draft202012Validator(schema)
out = {}
for path in sys.argv[2:]:
    text = open(path).read()
    # JSONC like the agent: strip the corpus's whole-line // comments and trailing commas.
    import re
    text = re.sub(r'(?m)^\\s*//.*$', '', text)
    text = re.sub(r',(\\s*[}\\]])', r'\\1', text)
    out[path] = [e.message for e in v.iter_errors(json.loads(text))]
print(json.dumps(out))`;
  verdicts = JSON.parse(execFileSync('/usr/bin/python3', ['-c', script, join(ROOT, 'docs/config.schema.json'), ...files, ...exceptionFiles], { encoding: 'utf8' }));
});

describe('docs/config.schema.json and skein validate agree', () => {
  it.each(CORPUS.map(([name, , valid], i) => [name, valid, i] as const))('%s: valid=%s for both', async (_name, valid, i) => {
    const file = files[i]!;
    const r = await runCli(['validate', '--config-only', '--config', file], { cwd: dir });
    expect({ skein: r.code === 0, jsonschema: verdicts[file]!.length === 0 }, `${r.stderr}\n${verdicts[file]!.join('\n')}`).toEqual({ skein: valid, jsonschema: valid });
    if (!valid) expect(r.stderr).toMatch(/^error \[SKEIN_ERR_CONFIG\]: .*(config key "|config file )/m);
  });

  it.each(SCHEMA_CANNOT_SAY.map(([name], i) => [name, i] as const))('%s: only skein validate refuses it (documented in json-rules.ts)', async (_name, i) => {
    const file = exceptionFiles[i]!;
    expect(verdicts[file]).toEqual([]);
    expect((await runCli(['validate', '--config-only', '--config', file], { cwd: dir })).code).toBe(2);
  });
});

describe('keys and values that are gone say what happened', () => {
  it('sandbox.allowPrivateCodeAddresses (a test-only switch) is refused, exit 2, naming why; the agent does not start', async () => {
    const file = fileOf(2000, { sandbox: { allowPrivateCodeAddresses: true } });
    for (const args of [
      ['validate', '--config', file],
      ['agent', '--config', file],
    ]) {
      const r = await runCli(args, { cwd: dir });
      expect(r.code).toBe(2);
      expect(r.stderr).toContain(
        `error [SKEIN_ERR_CONFIG]: config key "sandbox.allowPrivateCodeAddresses" (in ${file}): was removed: it let routine URLs reach loopback and private addresses, for tests only; routine code comes only from public addresses`,
      );
    }
  });
});
