/** `skein pki init|issue`: creates a fleet CA and issues agent/client certificates. */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { SkeinError } from '../../common/errors/index.ts';
import { NAME_HINT } from '../../common/names/index.ts';
import { DEFAULT_LEAF_DAYS, classifyHosts, describeCertificate, initCa, isValidCertName, isValidTrustDomain, issueCert, type CertKind } from '../pki/index.ts';
import { parseFlags, parseIntFlag } from './args.ts';
import type { Io } from './io.ts';

const DEFAULT_DIR = './pki';
const DEFAULT_TRUST_DOMAIN = 'skein.local';

export const PKI_USAGE = `Usage: skein pki init  [--dir D] [--trust-domain DOMAIN] [--force]
       skein pki issue --name N --kind agent|client [--dir D] [--host H]... [--days N]

Creates a certificate authority (ECDSA P-256) and issues certificates whose URI SAN is
the SPIFFE ID spiffe://DOMAIN/KIND/NAME, the identity agents authorize on.

Commands:
  init    create ca.crt, ca.key and pki.json in D
  issue   issue KIND-NAME.crt and KIND-NAME.key in D, signed by its CA

Run "skein pki COMMAND --help" for the options of each command.`;

export const PKI_INIT_USAGE = `Usage: skein pki init [--dir D] [--trust-domain DOMAIN] [--force]

Creates a CA (ECDSA P-256, 10 years) in D: ca.crt, ca.key (mode 0600), pki.json.

  --dir D                directory to create it in (default ${DEFAULT_DIR}, created with mode 0700)
  --trust-domain DOMAIN  SPIFFE trust domain of every certificate it issues (default ${DEFAULT_TRUST_DOMAIN})
  --force                replace an existing CA (certificates it issued stop verifying)`;

export const PKI_ISSUE_USAGE = `Usage: skein pki issue --name N --kind agent|client [--dir D] [--host H]... [--days N]

Issues a certificate signed by the CA in D, with SPIFFE ID spiffe://DOMAIN/KIND/N.

  --name N        certificate name: 1-64 of A-Z a-z 0-9 _ . -
  --kind K        agent (server + client auth) or client (client auth only)
  --dir D         directory of the CA (default ${DEFAULT_DIR})
  --host H        agent only, repeatable: DNS name or IP address the agent is reached at
                  (localhost, 127.0.0.1 and ::1 are always included)
  --days N        validity in days, 1-3650 (default ${DEFAULT_LEAF_DAYS})`;

export async function runPki(argv: string[], io: Io): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub === '--help' || sub === '-h' || sub === 'help') {
    io.out(PKI_USAGE);
    return 0;
  }
  if (sub === 'init') return runInit(rest, io);
  if (sub === 'issue') return runIssue(rest, io);
  throw new SkeinError('SKEIN_ERR_USAGE', sub === undefined ? 'missing pki command: init or issue (see skein pki --help)' : `unknown pki command "${sub}": init or issue (see skein pki --help)`);
}

function dirFlag(value: string | undefined): string {
  if (value === '') throw new SkeinError('SKEIN_ERR_USAGE', '--dir must not be empty');
  return value ?? DEFAULT_DIR;
}

async function runInit(argv: string[], io: Io): Promise<number> {
  const { values } = parseFlags(argv, {
    dir: { type: 'string' },
    'trust-domain': { type: 'string' },
    force: { type: 'boolean' },
  });
  if (values.help) {
    io.out(PKI_INIT_USAGE);
    return 0;
  }
  const dir = dirFlag(values.dir);
  const trustDomain = values['trust-domain'] ?? DEFAULT_TRUST_DOMAIN;
  if (!isValidTrustDomain(trustDomain)) {
    throw new SkeinError('SKEIN_ERR_USAGE', `--trust-domain ${JSON.stringify(trustDomain)} is invalid: use lower-case letters, digits, ".", "-" and "_"`);
  }
  const info = await initCa(dir, trustDomain, { force: values.force ?? false });
  io.out(
    [
      `created CA for trust domain ${info.trustDomain} in ${info.dir}`,
      `  ca.crt    ${join(info.dir, 'ca.crt')}`,
      `  ca.key    ${join(info.dir, 'ca.key')}`,
      `  pki.json  ${join(info.dir, 'pki.json')}`,
      `next: skein pki issue --dir ${dir} --kind agent --name NAME --host HOST`,
    ].join('\n'),
  );
  return 0;
}

async function runIssue(argv: string[], io: Io): Promise<number> {
  const { values } = parseFlags(argv, {
    name: { type: 'string' },
    kind: { type: 'string' },
    dir: { type: 'string' },
    host: { type: 'string', multiple: true },
    days: { type: 'string' },
  });
  if (values.help) {
    io.out(PKI_ISSUE_USAGE);
    return 0;
  }
  const { name, kind } = values;
  if (name === undefined) throw new SkeinError('SKEIN_ERR_USAGE', '--name is required (see --help)');
  if (!isValidCertName(name)) throw new SkeinError('SKEIN_ERR_USAGE', `--name ${JSON.stringify(name)} is invalid: it must be ${NAME_HINT}`);
  if (kind === undefined) throw new SkeinError('SKEIN_ERR_USAGE', '--kind is required: agent or client');
  if (kind !== 'agent' && kind !== 'client') throw new SkeinError('SKEIN_ERR_USAGE', `--kind must be agent or client, got ${JSON.stringify(kind)}`);
  const hosts = values.host ?? [];
  if (kind === 'client' && hosts.length > 0) throw new SkeinError('SKEIN_ERR_USAGE', '--host applies to --kind agent only');
  try {
    classifyHosts(hosts);
  } catch (err) {
    // Its message starts with "host …": turn it into one that names the flag.
    throw new SkeinError('SKEIN_ERR_USAGE', `--${(err as Error).message}`);
  }
  const days = parseIntFlag(values.days, 'days', 1, 3650);
  const dir = dirFlag(values.dir);

  const paths = await issueCert(dir, { name, kind: kind satisfies CertKind, hosts, ...(days === undefined ? {} : { days }) });
  const cert = describeCertificate(readFileSync(paths.cert, 'utf8'));
  io.out(
    [
      `issued ${kind} certificate ${cert.spiffeId ?? '(no SPIFFE ID)'} valid until ${cert.notAfter.toISOString()}`,
      `  cert  ${paths.cert}`,
      `  key   ${paths.key}`,
      `  ca    ${paths.ca}`,
      `  sha256 ${cert.sha256}`,
    ].join('\n'),
  );
  return 0;
}
