/**
 * The only module that touches @peculiar/x509: key generation and certificate signing.
 * Parsing goes through node:crypto instead (see describe.ts), which is faster and has no
 * dependency.
 */
// @peculiar/x509 pulls in tsyringe, which throws at import time unless a Reflect metadata
// polyfill is installed first. ESM evaluates imports in order, so this line must stay
// above the x509 import (and this must stay the only module importing @peculiar/x509).
import 'reflect-metadata';
import * as x509 from '@peculiar/x509';
import { randomBytes, webcrypto } from 'node:crypto';

// Node's and Bun's webcrypto both satisfy the subset x509 uses; the DOM Crypto type does
// not line up exactly with node:crypto's declaration, hence the cast.
x509.cryptoProvider.set(webcrypto as unknown as Crypto);

const subtle = webcrypto.subtle;
const EC_KEY = { name: 'ECDSA', namedCurve: 'P-256' } as const;
const SIGNING = { name: 'ECDSA', hash: 'SHA-256' } as const;

export type KeyPair = { publicKey: CryptoKey; privateKey: CryptoKey };

export async function generateKeyPair(): Promise<KeyPair> {
  return (await subtle.generateKey(EC_KEY, true, ['sign', 'verify'])) as unknown as KeyPair;
}

export async function privateKeyToPem(key: CryptoKey): Promise<string> {
  const der = await subtle.exportKey('pkcs8', key as webcrypto.CryptoKey);
  return x509.PemConverter.encode(der, 'PRIVATE KEY');
}

export async function privateKeyFromPem(pem: string): Promise<CryptoKey> {
  const der = x509.PemConverter.decodeFirst(pem);
  return (await subtle.importKey('pkcs8', der, EC_KEY, false, ['sign'])) as unknown as CryptoKey;
}

/** 16 random bytes, top bit cleared so the DER INTEGER stays positive without a pad byte,
 * second bit set so it never shrinks below 16 bytes (RFC 5280: positive, at most 20 octets). */
function randomSerial(): string {
  const bytes = randomBytes(16);
  bytes[0] = (bytes[0]! & 0x7f) | 0x40;
  return bytes.toString('hex');
}

/**
 * commonName must be plain (callers validate it): it goes into an RFC 4514 string unescaped.
 * trustDomainId (spiffe://<trust domain>, no path) becomes the CA's URI SAN, as X509-SVID §4
 * recommends for signing certificates: it is how an agent serving with this CA learns the
 * trust domain its clients' SPIFFE IDs must be in (tls.trustDomains' default).
 */
export async function createCaCertificate(opts: { keys: KeyPair; commonName: string; trustDomainId?: string; notBefore: Date; notAfter: Date }): Promise<string> {
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: randomSerial(),
    name: `CN=${opts.commonName}`,
    notBefore: opts.notBefore,
    notAfter: opts.notAfter,
    signingAlgorithm: SIGNING,
    keys: opts.keys,
    extensions: [
      new x509.BasicConstraintsExtension(true, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(opts.keys.publicKey),
      ...(opts.trustDomainId ? [new x509.SubjectAlternativeNameExtension([{ type: 'url', value: opts.trustDomainId }], false)] : []),
    ],
  });
  return cert.toString('pem');
}

export interface LeafSpec {
  commonName: string;
  /** URI SAN (the SPIFFE ID). */
  uri: string;
  dns: string[];
  ips: string[];
  serverAuth: boolean;
  notBefore: Date;
  notAfter: Date;
}

export async function createLeafCertificate(spec: LeafSpec, publicKey: CryptoKey, ca: { pem: string; key: CryptoKey }): Promise<string> {
  const caCert = new x509.X509Certificate(ca.pem);
  const names: x509.JsonGeneralName[] = [{ type: 'url', value: spec.uri }, ...spec.dns.map((value) => ({ type: 'dns' as const, value })), ...spec.ips.map((value) => ({ type: 'ip' as const, value }))];
  const eku = spec.serverAuth ? [x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth] : [x509.ExtendedKeyUsage.clientAuth];
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: randomSerial(),
    subject: `CN=${spec.commonName}`,
    // The parsed Name, not its string form, so the issuer DN matches the CA byte for byte.
    issuer: caCert.subjectName,
    notBefore: spec.notBefore,
    notAfter: spec.notAfter,
    signingAlgorithm: SIGNING,
    publicKey,
    signingKey: ca.key,
    extensions: [
      // CA:FALSE, critical: a leaf must never be usable to sign further certificates.
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension(eku, false),
      new x509.SubjectAlternativeNameExtension(names, false),
      await x509.SubjectKeyIdentifierExtension.create(publicKey),
      // Lets verifiers pick the right CA when several are configured (rotation).
      await x509.AuthorityKeyIdentifierExtension.create(caCert.publicKey),
    ],
  });
  return cert.toString('pem');
}
