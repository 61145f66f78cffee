/**
 * Client certificates a test needs that `skein pki issue` refuses to make (several URI SANs,
 * expired, not yet valid, wrong key usage): signed with @peculiar/x509 by the CA of a test
 * agent's development PKI (or by a stranger CA), written as PEM files. Multi-SAN and
 * malformed-SAN certificates are made with openssl instead (see identity.test.ts), as a
 * user would; this helper covers what openssl 3.0's `x509 -req` cannot (explicit dates).
 */
import 'reflect-metadata';
import * as x509 from '@peculiar/x509';
import { randomBytes, webcrypto } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

x509.cryptoProvider.set(webcrypto as unknown as Crypto);
const EC = { name: 'ECDSA', namedCurve: 'P-256' } as const;
const SIGN = { name: 'ECDSA', hash: 'SHA-256' } as const;
const DAY = 86_400_000;

export interface Issuer {
  pem: string;
  key: CryptoKey;
}

/** The CA of a development PKI directory (ca.crt, ca.key). */
export async function pkiIssuer(dir: string): Promise<Issuer> {
  const pem = readFileSync(join(dir, 'ca.crt'), 'utf8');
  const der = x509.PemConverter.decodeFirst(readFileSync(join(dir, 'ca.key'), 'utf8'));
  const key = (await webcrypto.subtle.importKey('pkcs8', der, EC, false, ['sign'])) as unknown as CryptoKey;
  return { pem, key };
}

/** A self-signed CA no agent trusts. */
export async function strangerIssuer(): Promise<Issuer> {
  const keys = (await webcrypto.subtle.generateKey(EC, true, ['sign', 'verify'])) as unknown as CryptoKeyPair;
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serial(),
    name: 'CN=stranger CA',
    notBefore: new Date(Date.now() - DAY),
    notAfter: new Date(Date.now() + 30 * DAY),
    signingAlgorithm: SIGN,
    keys,
    extensions: [new x509.BasicConstraintsExtension(true, undefined, true), new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign, true)],
  });
  return { pem: cert.toString('pem'), key: keys.privateKey };
}

export interface ClientSpec {
  name: string;
  uris: string[];
  notBefore?: Date;
  notAfter?: Date;
  /** Default clientAuth. */
  eku?: string[];
  /** Default digitalSignature. */
  keyUsage?: number;
}

/** Writes <dir>/<name>.crt and .key; returns their paths. */
export async function issueClient(dir: string, issuer: Issuer, spec: ClientSpec): Promise<{ cert: string; key: string }> {
  const keys = (await webcrypto.subtle.generateKey(EC, true, ['sign', 'verify'])) as unknown as CryptoKeyPair;
  const ca = new x509.X509Certificate(issuer.pem);
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: serial(),
    subject: `CN=${spec.name}`,
    issuer: ca.subjectName,
    notBefore: spec.notBefore ?? new Date(Date.now() - DAY),
    notAfter: spec.notAfter ?? new Date(Date.now() + 30 * DAY),
    signingAlgorithm: SIGN,
    publicKey: keys.publicKey,
    signingKey: issuer.key,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(spec.keyUsage ?? x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension(spec.eku ?? [x509.ExtendedKeyUsage.clientAuth], false),
      ...(spec.uris.length
        ? [
            new x509.SubjectAlternativeNameExtension(
              spec.uris.map((value) => ({ type: 'url' as const, value })),
              false,
            ),
          ]
        : []),
      await x509.AuthorityKeyIdentifierExtension.create(ca.publicKey),
    ],
  });
  const der = await webcrypto.subtle.exportKey('pkcs8', keys.privateKey as webcrypto.CryptoKey);
  const paths = { cert: join(dir, `${spec.name}.crt`), key: join(dir, `${spec.name}.key`) };
  writeFileSync(paths.cert, cert.toString('pem'));
  writeFileSync(paths.key, x509.PemConverter.encode(der, 'PRIVATE KEY'), { mode: 0o600 });
  return paths;
}

export const KEY_USAGE = x509.KeyUsageFlags;
export const EKU = x509.ExtendedKeyUsage;

function serial(): string {
  const b = randomBytes(16);
  b[0] = (b[0]! & 0x7f) | 0x40;
  return b.toString('hex');
}
