/** `skein key endorse|inspect`: fleet root keys endorse agent keys for discovery. */
import { randomBytes } from 'node:crypto';
import { closeSync, fsyncSync, linkSync, openSync, readFileSync, renameSync, rmSync, writeSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { formatPublicKey, keyId, readPrivateKey, readPublicKey } from '../../signing/index.ts';
import { SkeinError } from '../../common/errors/index.ts';
import { isValidSpiffeId } from '../discovery/advert.ts';
import { endorse, inspectEndorsement, MAX_ENDORSEMENT_BYTES } from '../discovery/endorse.ts';
import { parseFlags } from './args.ts';
import type { Io } from './io.ts';

export const KEY_USAGE = `Usage: skein key endorse --root ROOT_KEY --agent-pub KEY --spiffe-id ID --not-after T --out FILE [--force]
       skein key inspect FILE

Fleet root keys endorse agent keys, so a new host joins discovery without editing every
agent's discovery.trustedKeys: agents trust the root (discovery.rootKeys) and each agent
carries its endorsement (discovery.endorsement) in its advertisements.

Commands:
  endorse   sign an endorsement of an agent key with a fleet root key
  inspect   print what an endorsement says (without verifying it)

Run "skein key COMMAND --help" for the options of each command.`;

export const KEY_ENDORSE_USAGE = `Usage: skein key endorse --root ROOT_KEY --agent-pub KEY --spiffe-id ID --not-after T --out FILE [--force]

Signs an endorsement: the agent key KEY may advertise in the fleet as ID until T.

  --root ROOT_KEY  the fleet root's private key (skein keygen; mode 0600, keep it off agents)
  --agent-pub KEY  the agent's public key: "ed25519:<base64url>" or a .pub file
  --spiffe-id ID   the SPIFFE ID the agent may claim (spiffe://DOMAIN/agent/NAME)
  --not-after T    expiry: ISO 8601 (2026-12-31T00:00:00Z) or unix milliseconds
  --out FILE       where to write the endorsement (binary, mode 0644)
  --force          replace an existing FILE

Next: set discovery.endorsement to FILE in that agent's config, and put the root's public
key (ROOT_KEY.pub) in discovery.rootKeys on every agent.`;

export const KEY_INSPECT_USAGE = `Usage: skein key inspect FILE

Prints the agent key, SPIFFE ID, expiry and root key id of an endorsement. It does not
verify the signature: agents do that against discovery.rootKeys.`;

/**
 * @example
 *   await runKey(['endorse', '--root', 'root.key', '--agent-pub', 'agent.key.pub',
 *     '--spiffe-id', 'spiffe://skein.local/agent/a1', '--not-after', '2026-12-31T00:00:00Z', '--out', 'a1.endorsement'], processIo);
 */
export async function runKey(argv: string[], io: Io, now: () => number = Date.now): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub === '--help' || sub === '-h' || sub === 'help') {
    io.out(KEY_USAGE);
    return 0;
  }
  if (sub === 'endorse') return runEndorse(rest, io, now);
  if (sub === 'inspect') return runInspect(rest, io, now);
  throw new SkeinError(
    'SKEIN_ERR_USAGE',
    sub === undefined ? 'missing key command: endorse or inspect (see skein key --help)' : `unknown key command "${sub}": endorse or inspect (see skein key --help)`,
  );
}

/** ISO 8601 date(-time) with an explicit zone, or unix milliseconds. */
export function parseNotAfter(value: string): number {
  if (/^\d{1,16}$/.test(value)) return Number(value);
  if (/^\d{4}-\d{2}-\d{2}(?:T\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?(?:Z|[+-]\d{2}:\d{2}))?$/.test(value)) {
    const ms = Date.parse(value);
    if (Number.isFinite(ms)) return ms;
  }
  throw new SkeinError('SKEIN_ERR_USAGE', `--not-after must be ISO 8601 with a zone (2026-12-31T00:00:00Z) or unix milliseconds, got ${JSON.stringify(value)}`);
}

function required(values: Record<string, string | boolean | undefined>, name: string): string {
  const v = values[name];
  if (v === undefined) throw new SkeinError('SKEIN_ERR_USAGE', `--${name} is required (see skein key endorse --help)`);
  if (v === '' || typeof v !== 'string') throw new SkeinError('SKEIN_ERR_USAGE', `--${name} must not be empty`);
  return v;
}

/** Writes binary data crash-safely: a temp file then link (exclusive) or rename (force). */
function writeBytes(path: string, data: Uint8Array, force: boolean): void {
  const tmp = join(dirname(path), `.${basename(path)}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
  try {
    const fd = openSync(tmp, 'wx', 0o644);
    try {
      writeSync(fd, data);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    if (force) renameSync(tmp, path);
    else linkSync(tmp, path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') {
      throw new SkeinError('SKEIN_ERR_USAGE', `refusing to overwrite ${path}: pass --force to replace it`, { path });
    }
    throw new SkeinError('SKEIN_ERR_CONFIG', `cannot write ${path}: ${(err as Error).message}`, { path }, { cause: err });
  } finally {
    rmSync(tmp, { force: true });
  }
}

async function runEndorse(argv: string[], io: Io, now: () => number): Promise<number> {
  const { values } = parseFlags(argv, {
    root: { type: 'string' },
    'agent-pub': { type: 'string' },
    'spiffe-id': { type: 'string' },
    'not-after': { type: 'string' },
    out: { type: 'string' },
    force: { type: 'boolean' },
  });
  if (values.help) {
    io.out(KEY_ENDORSE_USAGE);
    return 0;
  }
  const rootPath = required(values, 'root');
  const agentPub = required(values, 'agent-pub');
  const spiffeId = required(values, 'spiffe-id');
  const notAfterText = required(values, 'not-after');
  const out = required(values, 'out');
  if (!isValidSpiffeId(spiffeId)) {
    throw new SkeinError('SKEIN_ERR_USAGE', `--spiffe-id ${JSON.stringify(spiffeId)} is not a SPIFFE ID: spiffe://DOMAIN/PATH (e.g. spiffe://skein.local/agent/a1)`);
  }
  const notAfter = parseNotAfter(notAfterText);
  if (notAfter <= now()) throw new SkeinError('SKEIN_ERR_USAGE', `--not-after ${new Date(notAfter).toISOString()} is in the past`);

  const root = readPrivateKey(rootPath); // SKEIN_ERR_SIG_KEY_PERMISSIONS / _INVALID, exit 2
  const agentKey = readPublicKey(agentPub);
  const agentKeyId = keyId(agentKey);
  if (agentKeyId === root.keyId) throw new SkeinError('SKEIN_ERR_USAGE', 'the agent key is the root key: endorse a separate agent key (skein keygen)');
  const bytes = endorse({ root, agentPublicKey: agentKey, spiffeId, notAfter });
  writeBytes(out, bytes, values.force ?? false);
  io.out(
    [
      `endorsed agent key ${agentKeyId}`,
      `  agent key  ${formatPublicKey(agentKey)}`,
      `  spiffe id  ${spiffeId}`,
      `  not after  ${new Date(notAfter).toISOString()}`,
      `  root key   ${root.keyId} (${formatPublicKey(root.publicKey)})`,
      `  wrote      ${out} (${bytes.length} bytes)`,
      `next: set discovery.endorsement to ${out} in the agent's config; every agent needs ${formatPublicKey(root.publicKey)} in discovery.rootKeys`,
    ].join('\n'),
  );
  return 0;
}

async function runInspect(argv: string[], io: Io, now: () => number): Promise<number> {
  const { values, positionals } = parseFlags(argv, {}, true);
  if (values.help) {
    io.out(KEY_INSPECT_USAGE);
    return 0;
  }
  if (positionals.length !== 1) throw new SkeinError('SKEIN_ERR_USAGE', 'expected one endorsement FILE (see skein key inspect --help)');
  const path = positionals[0]!;
  let bytes: Buffer;
  try {
    bytes = readFileSync(path);
  } catch (err) {
    throw new SkeinError('SKEIN_ERR_USAGE', `cannot read ${path}: ${(err as Error).message}`, { path });
  }
  if (bytes.length > MAX_ENDORSEMENT_BYTES) throw new SkeinError('SKEIN_ERR_CONFIG', `${path} is ${bytes.length} bytes: not an endorsement`);
  const e = inspectEndorsement(bytes);
  const expired = now() > e.notAfter;
  io.out(
    [
      `endorsement ${path} (signature not verified)`,
      `  agent key  ${e.agentKeyId} (${formatPublicKey(e.agentKey)})`,
      `  spiffe id  ${e.spiffe}`,
      `  not after  ${new Date(e.notAfter).toISOString()}${expired ? ' (EXPIRED)' : ''}`,
      `  root key   ${e.rootKeyId}`,
    ].join('\n'),
  );
  return 0;
}
