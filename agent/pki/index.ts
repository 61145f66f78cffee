/**
 * skein's PKI: one ECDSA P-256 CA per fleet and leaf certificates whose URI SAN is the
 * SPIFFE ID the agent authorizes on (spiffe://<trustDomain>/<kind>/<name>).
 *
 * Layout of a PKI directory (mode 0700):
 *   ca.crt, ca.key (0600), pki.json {"trustDomain"},
 *   <kind>-<name>.crt and <kind>-<name>.key (0600) per issued leaf.
 * ca.crt is written last by initCa, so its presence means the PKI is complete.
 */
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { hostname } from 'node:os';
import { join, resolve } from 'node:path';
import { SkeinError } from '../../common/errors/index.ts';
import { NAME_HINT, NAME_PATTERN } from '../../common/names/index.ts';
import { parseCertificate, parseOpenSslDate, spiffeIdFromSan } from './describe.ts';
import { parseSpiffeId, SPIFFE_SCHEME } from '../../common/spiffe/index.ts';
import { ensurePrivateDir, writeFileAtomic } from '../../common/fs/index.ts';

export { describeCertificate, type CertificateSummary } from './describe.ts';

/**
 * The certificate writer (@peculiar/x509 and its ASN.1 stack), loaded when a key or
 * certificate is made: an agent whose PKI is already on disk only reads PEM files with
 * node:crypto, and evaluating the library cost ~13 ms of every start (docs/benchmarks.md).
 */
// The polyfill is loaded on its own first: bundled behind a dynamic import, Bun evaluates
// x509.ts's ESM imports (@peculiar/x509, whose tsyringe throws without the polyfill) before its
// CommonJS one (reflect-metadata), whatever their order in the file.
const x509 = () => import('reflect-metadata').then(() => import('./x509.ts'));

export type CertKind = 'agent' | 'client';
export interface IssuedPaths {
  cert: string;
  key: string;
  ca: string;
}
export interface PkiInfo {
  dir: string;
  trustDomain: string;
}

export const DEFAULT_LEAF_DAYS = 397;
/** Name of the client certificate ensureDevPki creates (the CLI's `dispatch` looks for it). */
export const DEV_CLIENT_NAME = 'dev-client';

const DNS_RE = /^(\*\.)?[A-Za-z0-9_]([A-Za-z0-9_-]{0,62})(\.[A-Za-z0-9_]([A-Za-z0-9_-]{0,62}))*$/;
// Clocks on edge hosts drift; a certificate valid "from now" is refused by a peer behind us.
const SKEW_MS = 5 * 60_000;
const DAY_MS = 86_400_000;
const CA_YEARS = 10;
/** ensureDevPki re-issues a development leaf this close to its expiry. */
const DEV_RENEW_MS = 30 * DAY_MS;

/** A SPIFFE trust domain name (common/spiffe/index.ts): 1–255 of a-z 0-9 . - _. */
export function isValidTrustDomain(trustDomain: string): boolean {
  return typeof trustDomain === 'string' && parseSpiffeId(`${SPIFFE_SCHEME}${trustDomain}`, 'trust-domain').ok;
}

/** Certificate names follow the agent and routine name syntax (common/names): an agent's certificate carries its agent name. */
export function isValidCertName(name: string): boolean {
  return NAME_PATTERN.test(name);
}

const usage = (message: string) => new SkeinError('SKEIN_ERR_USAGE', message);

/** Re-throws SkeinErrors as they are; anything else becomes SKEIN_ERR_PKI naming the step. */
function pkiFailure(what: string, err: unknown): SkeinError {
  if (err instanceof SkeinError) return err;
  return new SkeinError('SKEIN_ERR_PKI', `${what}: ${(err as Error).message ?? String(err)}`, {}, { cause: err });
}

/** PEM files end with a newline, so `cat ca-old.crt ca-new.crt > bundle` makes a valid bundle. */
function pemFile(pem: string): string {
  return pem.endsWith('\n') ? pem : `${pem}\n`;
}

export function spiffeId(trustDomain: string, kind: CertKind, name: string): string {
  return `spiffe://${trustDomain}/${kind}/${name}`;
}

export function leafPaths(dir: string, kind: CertKind, name: string): IssuedPaths {
  const abs = resolve(dir);
  return { cert: join(abs, `${kind}-${name}.crt`), key: join(abs, `${kind}-${name}.key`), ca: join(abs, 'ca.crt') };
}

export async function initCa(dir: string, trustDomain: string, options: { force?: boolean; now?: Date } = {}): Promise<PkiInfo> {
  if (!isValidTrustDomain(trustDomain)) {
    throw usage(`trust domain ${JSON.stringify(trustDomain)} is invalid: use lower-case letters, digits, ".", "-" and "_"`);
  }
  const abs = resolve(dir);
  const caCrt = join(abs, 'ca.crt');
  if (!options.force && existsSync(caCrt)) {
    throw new SkeinError('SKEIN_ERR_PKI', `a CA already exists in ${abs}; pass --force to replace it (every certificate it issued stops verifying)`);
  }
  try {
    ensurePrivateDir(abs);
    const now = options.now ?? new Date();
    const notAfter = new Date(now);
    notAfter.setUTCFullYear(notAfter.getUTCFullYear() + CA_YEARS);
    const { createCaCertificate, generateKeyPair, privateKeyToPem } = await x509();
    const keys = await generateKeyPair();
    const pem = await createCaCertificate({ keys, commonName: `skein CA ${trustDomain}`, trustDomainId: `${SPIFFE_SCHEME}${trustDomain}`, notBefore: new Date(now.getTime() - SKEW_MS), notAfter });
    writeFileAtomic(join(abs, 'ca.key'), pemFile(await privateKeyToPem(keys.privateKey)), 0o600);
    writeFileAtomic(join(abs, 'pki.json'), `${JSON.stringify({ trustDomain }, null, 2)}\n`, 0o644);
    writeFileAtomic(caCrt, pemFile(pem), 0o644);
  } catch (err) {
    throw pkiFailure(`cannot create the CA in ${abs}`, err);
  }
  return { dir: abs, trustDomain };
}

export function readPkiInfo(dir: string): PkiInfo {
  const abs = resolve(dir);
  const file = join(abs, 'pki.json');
  let raw: string;
  try {
    raw = readFileSync(file, 'utf8');
  } catch (err) {
    const missing = (err as NodeJS.ErrnoException).code === 'ENOENT';
    throw new SkeinError('SKEIN_ERR_PKI', missing ? `no PKI in ${abs}: run \`skein pki init --dir ${dir}\` first` : `cannot read ${file}: ${(err as Error).message}`, {}, { cause: err });
  }
  let trustDomain: unknown;
  try {
    trustDomain = (JSON.parse(raw) as { trustDomain?: unknown }).trustDomain;
  } catch (err) {
    throw new SkeinError('SKEIN_ERR_PKI', `${file} is not valid JSON: ${(err as Error).message}`, {}, { cause: err });
  }
  if (typeof trustDomain !== 'string' || !isValidTrustDomain(trustDomain)) {
    throw new SkeinError('SKEIN_ERR_PKI', `${file} has no valid "trustDomain"`);
  }
  return { dir: abs, trustDomain };
}

/**
 * Splits host strings into DNS names and IP literals ("[::1]" and zone ids accepted), adding
 * the loopback names every agent certificate carries. Throws SKEIN_ERR_USAGE on anything else.
 */
export function classifyHosts(hosts: string[]): { dns: string[]; ips: string[] } {
  const dns = new Set<string>(['localhost']);
  const ips = new Set<string>(['127.0.0.1', '::1']);
  for (const host of hosts) {
    const bare = host.trim().replace(/^\[(.*)\]$/, '$1');
    const ip = bare.replace(/%.*$/, ''); // a zone id (fe80::1%eth0) cannot go in a certificate
    if (isIP(ip)) ips.add(ip.toLowerCase());
    else if (bare.length <= 253 && DNS_RE.test(bare)) dns.add(bare.toLowerCase());
    else throw usage(`host ${JSON.stringify(host)} is neither an IP address nor a DNS name`);
  }
  return { dns: [...dns], ips: [...ips] };
}

function validateName(name: string): void {
  if (!isValidCertName(name)) {
    throw usage(`certificate name ${JSON.stringify(name)} is invalid: it must be ${NAME_HINT}`);
  }
}

export async function issueCert(dir: string, options: { name: string; kind: CertKind; hosts?: string[]; days?: number; now?: Date }): Promise<IssuedPaths> {
  const { name, kind, hosts = [], days = DEFAULT_LEAF_DAYS } = options;
  validateName(name);
  if (kind !== 'agent' && kind !== 'client') throw usage(`certificate kind ${JSON.stringify(kind)} is invalid: agent or client`);
  if (!Number.isInteger(days) || days < 1 || days > 3650) throw usage(`validity of ${days} days is invalid: an integer from 1 to 3650`);
  if (kind === 'client' && hosts.length > 0) throw usage('hosts apply to agent certificates only');
  const { dns, ips } = kind === 'agent' ? classifyHosts(hosts) : { dns: [], ips: [] };

  const info = readPkiInfo(dir);
  const paths = leafPaths(info.dir, kind, name);
  try {
    const caPem = readFileSync(paths.ca, 'utf8');
    const caKeyPem = readFileSync(join(info.dir, 'ca.key'), 'utf8');
    // A swapped ca.key would sign certificates nobody can verify; catch it here, clearly.
    if (!parseCertificate(caPem).checkPrivateKey(createPrivateKey(caKeyPem))) {
      throw new SkeinError('SKEIN_ERR_PKI', `${join(info.dir, 'ca.key')} does not belong to ${paths.ca}`);
    }
    const now = options.now ?? new Date();
    const { createLeafCertificate, generateKeyPair, privateKeyFromPem, privateKeyToPem } = await x509();
    const keys = await generateKeyPair();
    const pem = await createLeafCertificate(
      {
        commonName: name,
        uri: spiffeId(info.trustDomain, kind, name),
        dns,
        ips,
        serverAuth: kind === 'agent',
        notBefore: new Date(now.getTime() - SKEW_MS),
        notAfter: new Date(now.getTime() + days * DAY_MS),
      },
      keys.publicKey,
      { pem: caPem, key: await privateKeyFromPem(caKeyPem) },
    );
    // Key first: a reader that finds the new certificate also finds its key.
    writeFileAtomic(paths.key, pemFile(await privateKeyToPem(keys.privateKey)), 0o600);
    writeFileAtomic(paths.cert, pemFile(pem), 0o644);
  } catch (err) {
    throw pkiFailure(`cannot issue ${kind} certificate "${name}" in ${info.dir}`, err);
  }
  return paths;
}

/** The hosts a development agent certificate must name for a listen address. */
function devHosts(listenHost: string): string[] {
  const bare = listenHost.replace(/^\[(.*)\]$/, '$1');
  // A wildcard listener is reached by the machine's name (loopback names are always added).
  if (bare === '' || bare === '0.0.0.0' || bare === '::') return DNS_RE.test(hostname()) ? [hostname()] : [];
  return [bare];
}

/** Whether an existing leaf can be reused: present, ours, matching key, not near expiry, naming `hosts`. */
function leafUsable(paths: IssuedPaths, ca: X509Certificate, id: string, hosts: string[]): boolean {
  try {
    const cert = new X509Certificate(readFileSync(paths.cert));
    if (!cert.verify(ca.publicKey)) return false;
    if (!cert.checkPrivateKey(createPrivateKey(readFileSync(paths.key)))) return false;
    if (parseOpenSslDate(cert.validTo).getTime() - Date.now() < DEV_RENEW_MS) return false;
    if (spiffeIdFromSan(cert.subjectAltName) !== id) return false;
    return hosts.every((h) => {
      const ip = h.replace(/%.*$/, '');
      return isIP(ip) ? cert.checkIP(ip) !== undefined : cert.checkHost(h, { subject: 'never' }) !== undefined;
    });
  } catch {
    return false;
  }
}

export async function ensureDevPki(
  stateDir: string,
  options: { trustDomain: string; agentName: string; listenHost: string },
): Promise<{ dir: string; agent: IssuedPaths; client: IssuedPaths; created: boolean }> {
  validateName(options.agentName);
  const dir = resolve(stateDir, 'pki');
  let created = false;
  if (!existsSync(join(dir, 'ca.crt'))) {
    await initCa(dir, options.trustDomain);
    created = true;
  } else {
    const info = readPkiInfo(dir);
    // Silently mixing trust domains would make every SPIFFE-based authorization fail later.
    if (info.trustDomain !== options.trustDomain) {
      throw new SkeinError('SKEIN_ERR_PKI', `the development PKI in ${dir} is for trust domain "${info.trustDomain}", the config says "${options.trustDomain}": remove ${dir} or fix tls.trustDomain`);
    }
  }
  let ca: X509Certificate;
  try {
    ca = new X509Certificate(readFileSync(join(dir, 'ca.crt')));
  } catch (err) {
    throw pkiFailure(`cannot read ${join(dir, 'ca.crt')}`, err);
  }
  const hosts = devHosts(options.listenHost);
  const agent = leafPaths(dir, 'agent', options.agentName);
  if (!leafUsable(agent, ca, spiffeId(options.trustDomain, 'agent', options.agentName), hosts)) {
    await issueCert(dir, { name: options.agentName, kind: 'agent', hosts });
    created = true;
  }
  const client = leafPaths(dir, 'client', DEV_CLIENT_NAME);
  if (!leafUsable(client, ca, spiffeId(options.trustDomain, 'client', DEV_CLIENT_NAME), [])) {
    await issueCert(dir, { name: DEV_CLIENT_NAME, kind: 'client' });
    created = true;
  }
  return { dir, agent, client, created };
}

export { pinMismatch, presentedIdentity, type Pin } from './pin.ts';
export { spiffeIdFromSan } from './describe.ts';
