/**
 * The listener's TLS material: read from the configured files (or the development PKI) and
 * checked before use, so a rotation that lands a broken file is refused while the old
 * material keeps serving. "Broken" means anything a handshake would trip over later: a file
 * that does not parse, a key that does not belong to the certificate, a certificate outside
 * its validity period, a CA bundle with no certificate in it.
 */
import { X509Certificate, createHash, createPrivateKey } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { AgentConfig } from '../config/schema.ts';
import { configError } from '../config/schema-dsl.ts';
import { SkeinError } from '../../common/errors/index.ts';
import type { Logger } from '../log/index.ts';
import { ensureDevPki, type CertificateSummary } from './index.ts';
import { caTrustDomains, summarize } from './describe.ts';

export interface TlsMaterial {
  cert: string | Buffer;
  key: string | Buffer;
  ca: string | Buffer;
  minVersion: 'TLSv1.3' | 'TLSv1.2';
  /** require: mutual TLS; optional: callers without a certificate authenticate with a token. */
  clientCerts: 'require' | 'optional';
  /** Trust domains client SPIFFE IDs must be in (tls.trustDomains or the CA's: readTls below). */
  trustDomains: readonly string[];
}

export interface TlsFiles {
  cert: string;
  key: string;
  ca: string;
}

export interface LoadedTls {
  files: TlsFiles;
  /** Where material.trustDomains came from (logged at start and on reload). */
  trustDomainsFrom: 'tls.trustDomains' | 'tls.ca' | 'tls.trustDomain';
  material: TlsMaterial;
  certificate: CertificateSummary;
  /** SHA-256 over cert, key and CA bytes: tells a real change from a touched file. */
  digest: string;
}

/** The files to serve from: tls.cert/key/ca, or the development PKI when they are unset. */
export async function tlsFiles(config: AgentConfig, listenHost: string, log: Logger): Promise<TlsFiles> {
  const { cert, key, ca } = config.tls;
  if (cert && key && ca) return { cert, key, ca };
  const dev = await ensureDevPki(config.agent.stateDir, { trustDomain: config.tls.trustDomain, agentName: config.agent.name, listenHost });
  log[dev.created ? 'warn' : 'info']('using the development PKI (set tls.cert, tls.key and tls.ca for production)', {
    dir: dev.dir,
    created: dev.created,
    clientCert: dev.client.cert,
    clientKey: dev.client.key,
    ca: dev.client.ca,
  });
  return dev.agent;
}

/** Reads and checks the material; throws SKEIN_ERR_CONFIG naming the key and file at fault. */
export function readTls(files: TlsFiles, config: Pick<AgentConfig, 'tls'>, now = new Date()): LoadedTls {
  const read = (path: string, key: string) => {
    try {
      return readFileSync(path);
    } catch (err) {
      throw new SkeinError('SKEIN_ERR_CONFIG', `cannot read ${key} file ${path}: ${(err as Error).message}`, { key, path });
    }
  };
  const cert = read(files.cert, 'tls.cert');
  const key = read(files.key, 'tls.key');
  const ca = read(files.ca, 'tls.ca');

  let leaf: X509Certificate;
  try {
    leaf = new X509Certificate(cert);
  } catch (err) {
    throw bad('tls.cert', files.cert, `not a PEM certificate (${(err as Error).message})`);
  }
  let privateKey;
  try {
    privateKey = createPrivateKey(key);
  } catch (err) {
    throw bad('tls.key', files.key, `not a PEM private key (${(err as Error).message})`);
  }
  if (!leaf.checkPrivateKey(privateKey)) throw bad('tls.key', files.key, `does not belong to the certificate in ${files.cert}`);
  const notBefore = new Date(leaf.validFrom);
  const notAfter = new Date(leaf.validTo);
  if (now < notBefore) throw bad('tls.cert', files.cert, `is not valid before ${notBefore.toISOString()}`);
  if (now > notAfter) throw bad('tls.cert', files.cert, `expired at ${notAfter.toISOString()}`);
  if (!/-----BEGIN CERTIFICATE-----/.test(ca.toString('latin1'))) throw bad('tls.ca', files.ca, 'holds no PEM certificate');
  try {
    new X509Certificate(ca);
  } catch (err) {
    throw bad('tls.ca', files.ca, `not a PEM certificate bundle (${(err as Error).message})`);
  }

  const digest = createHash('sha256').update(cert).update('\0').update(key).update('\0').update(ca).digest('hex');
  const trust = clientTrustDomains(config.tls, ca);
  return {
    files,
    trustDomainsFrom: trust.from,
    material: { cert, key, ca, minVersion: config.tls.minVersion, clientCerts: config.tls.clientCerts, trustDomains: trust.domains },
    certificate: summarize(leaf),
    digest,
  };
}

/**
 * The trust domains client SPIFFE IDs must be in: tls.trustDomains when set; else the ones
 * the CA certificates name (skein pki init gives its CA the URI SAN spiffe://<trust domain>);
 * else tls.trustDomain (default "skein.local", the development PKI's, whose pki.json must
 * agree with it). Never "any": a fleet CA bundle that also holds another domain's CA must not
 * let that CA's certificates speak for this fleet unless the operator lists the domain.
 */
export function clientTrustDomains(tls: Pick<AgentConfig['tls'], 'trustDomains' | 'trustDomain'>, caBundle: string | Buffer): { domains: string[]; from: LoadedTls['trustDomainsFrom'] } {
  if (tls.trustDomains) {
    // An empty list would refuse every SPIFFE ID while looking like "no restriction".
    if (tls.trustDomains.length === 0) throw configError('tls.trustDomains', "must list at least one trust domain (leave it unset to use the CA's)");
    return { domains: [...new Set(tls.trustDomains)], from: 'tls.trustDomains' };
  }
  const named = caTrustDomains(caBundle);
  if (named.length > 0) return { domains: named, from: 'tls.ca' };
  return { domains: [tls.trustDomain], from: 'tls.trustDomain' };
}

/** Says which client trust domains apply and why; warns when an operator's CA names none. */
export function logTrustDomains(loaded: LoadedTls, config: Pick<AgentConfig, 'tls'>, log: Logger): void {
  const fields = { trustDomains: loaded.material.trustDomains, from: loaded.trustDomainsFrom };
  if (loaded.trustDomainsFrom === 'tls.trustDomain' && config.tls.ca) {
    log.warn("client SPIFFE IDs must be in tls.trustDomain: the CA in tls.ca names no trust domain (set tls.trustDomains to the fleet's)", fields);
  } else log.info('client SPIFFE IDs accepted from', fields);
}

function bad(key: string, path: string, why: string): SkeinError {
  return new SkeinError('SKEIN_ERR_CONFIG', `${key} file ${path}: ${why}`, { key, path });
}
