/**
 * What a fleet is made of: a fleet CA (skein's own PKI code), a TLS certificate per simulated
 * agent issued by it (for the identity check), an Ed25519 signing key per agent and the fleet
 * root's endorsement of it. Certificates take ~5 ms each under Bun, so they are cached across
 * runs (`--cache`): 5,000 of them cost ~25 s once. Signing keys, the root key and the
 * endorsements are made fresh for every run (microseconds each).
 *
 * The simulated agents' certificates share one P-256 key (the certificates differ: SPIFFE ID,
 * serial, so every fingerprint is distinct); they name no host, which the identity check
 * does not look at (it pins the certificate's SHA-256 and SPIFFE ID instead).
 */
import { createPrivateKey, createPublicKey, webcrypto, X509Certificate } from 'node:crypto';
import { appendFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { endorse } from '../../agent/discovery/endorse.ts';
import { initCa, issueCert, spiffeId } from '../../agent/pki/index.ts';
import { createLeafCertificate, generateKeyPair as generateTlsKey, privateKeyFromPem, privateKeyToPem } from '../../agent/pki/x509.ts';
import { formatPublicKey, generateKeyPair, privateKeyToSeed, writeKeyPair, type KeyPair } from '../../signing/index.ts';

export const TRUST_DOMAIN = 'fleet.sim';
export const FLEET = 'sim';
/** Endorsements outlive any run by far. */
const ENDORSED_FOR_MS = 7 * 86_400_000;

export interface SimCert {
  name: string;
  cert: string;
}

/** sim00001 … : names sort in index order and stay valid agent names. */
export const simName = (i: number) => `sim${String(i + 1).padStart(5, '0')}`;

export const fingerprintOf = (pem: string) => new X509Certificate(pem).fingerprint256.replaceAll(':', '').toLowerCase();

/** The cached CA directory (created on first use). */
export async function fleetCa(cache: string): Promise<string> {
  const dir = join(cache, 'pki');
  if (!existsSync(join(dir, 'ca.crt'))) {
    mkdirSync(cache, { recursive: true, mode: 0o700 });
    await initCa(dir, TRUST_DOMAIN, { force: true });
  }
  return dir;
}

/** Certificates for simulated agents 0…count-1, generating (and caching) the missing ones. */
export async function simCertificates(cache: string, count: number, log: (s: string) => void): Promise<{ certs: SimCert[]; keyPem: string; generatedMs: number }> {
  const dir = await fleetCa(cache);
  const keyFile = join(dir, 'sim-leaf.key');
  const listFile = join(dir, 'sim-certs.jsonl');
  if (!existsSync(keyFile)) {
    writeFileSync(keyFile, await privateKeyToPem((await generateTlsKey()).privateKey), { mode: 0o600 });
    writeFileSync(listFile, '');
  }
  const keyPem = readFileSync(keyFile, 'utf8');
  const certs = readFileSync(listFile, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as SimCert);
  const started = performance.now();
  if (certs.length < count) {
    log(`  issuing ${count - certs.length} simulated agents' certificates (cached in ${listFile}) …\n`);
    const ca = { pem: readFileSync(join(dir, 'ca.crt'), 'utf8'), key: await privateKeyFromPem(readFileSync(join(dir, 'ca.key'), 'utf8')) };
    // The leaf key's public half, from its private PEM via node:crypto (webcrypto cannot derive it).
    const spki = createPublicKey(createPrivateKey(keyPem)).export({ type: 'spki', format: 'der' });
    const publicKey = (await webcrypto.subtle.importKey('spki', spki, { name: 'ECDSA', namedCurve: 'P-256' }, true, ['verify'])) as unknown as CryptoKey;
    const now = Date.now();
    let batch = '';
    for (let i = certs.length; i < count; i++) {
      const name = simName(i);
      const cert = await createLeafCertificate(
        { commonName: name, uri: spiffeId(TRUST_DOMAIN, 'agent', name), dns: [], ips: [], serverAuth: true, notBefore: new Date(now - 60_000), notAfter: new Date(now + 365 * 86_400_000) },
        publicKey,
        ca,
      );
      certs.push({ name, cert });
      batch += `${JSON.stringify({ name, cert })}\n`;
      if (batch.length > 1_000_000 || i === count - 1) {
        appendFileSync(listFile, batch);
        batch = '';
      }
    }
  }
  return { certs: certs.slice(0, count), keyPem, generatedMs: performance.now() - started };
}

export interface Fleet {
  root: KeyPair;
  /** "ed25519:…" of the root, for discovery.rootKeys. */
  rootKey: string;
}

export function newFleet(): Fleet {
  const root = generateKeyPair();
  return { root, rootKey: formatPublicKey(root.publicKey) };
}

/** A fresh signing key for `name` and the root's endorsement of it. */
export function endorsedKey(fleet: Fleet, name: string): { key: KeyPair; endorsement: Uint8Array } {
  const key = generateKeyPair();
  const endorsement = endorse({ root: fleet.root, agentPublicKey: key.publicKey, spiffeId: spiffeId(TRUST_DOMAIN, 'agent', name), notAfter: Date.now() + ENDORSED_FOR_MS });
  return { key, endorsement };
}

/** What a real agent under test needs on disk: TLS certificate, signing key, endorsement. */
export async function realAgentFiles(cache: string, fleet: Fleet, name: string, address: string, dir: string) {
  const pki = await fleetCa(cache);
  const tls = await issueCert(pki, { name, kind: 'agent', hosts: [address] });
  const { key, endorsement } = endorsedKey(fleet, name);
  const signingKey = join(dir, `${name}.key`);
  writeKeyPair(signingKey, { keyPair: key, force: true });
  const endorsementFile = join(dir, `${name}.endorsement`);
  writeFileSync(endorsementFile, endorsement);
  return { cert: tls.cert, key: tls.key, ca: tls.ca, signingKey, endorsement: endorsementFile };
}

/** A client certificate for the probes and the CLI (`spiffe://fleet.sim/client/ops`). */
export async function clientCert(cache: string) {
  const pki = await fleetCa(cache);
  const paths = await issueCert(pki, { name: 'ops', kind: 'client' });
  return { cert: paths.cert, key: paths.key, ca: paths.ca, spiffe: spiffeId(TRUST_DOMAIN, 'client', 'ops') };
}

/** A signing key as the simulator process receives it (seed, base64). */
export const seedOf = (key: KeyPair) => privateKeyToSeed(key.privateKey).toString('base64');
