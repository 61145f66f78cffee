/**
 * h2load (nghttp2-client) as the external client of the throughput goal: h2load has no client
 * certificates, so it drives a one-way TLS target (the agent with `tls.clientCerts: "optional"`
 * and a bearer token; the bare server without `requestCert`). One connection, 64 streams in
 * flight, the bench's CBOR `echo` request as the body of every POST.
 */
import { spawnSync } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Encoder } from 'cbor-x';
import { SignJWT } from 'jose';
import type { Procs } from './procs.ts';
import { agentConfig, ROOT, startAgent, startBaselineProc } from './skein.ts';
import { spread, type Spread } from './stats.ts';
import { CONCURRENCY, PAYLOAD } from './workload.ts';

export interface H2loadRun {
  /** Requests per second h2load reports ("finished in …, N req/s"). */
  throughput: number;
  /** Responses by status class: every one of them must be 2xx for the run to count. */
  ok: number;
  failed: number;
}

/** Fails at once, naming the tool, when h2load is missing (Debian: nghttp2-client). */
export function requireH2load(): void {
  const r = spawnSync('h2load', ['--version'], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error('h2load not found: install Debian package nghttp2-client (apt-get install -y nghttp2-client)');
}

/** Writes the request body (the CBOR the skein client sends for echo(PAYLOAD)) once. */
export function h2loadBody(dir: string): string {
  const file = join(dir, 'h2load-echo.cbor');
  writeFileSync(file, new Encoder({ useRecords: false, mapsAsObjects: true }).encode({ args: [PAYLOAD] }));
  return file;
}

export function h2load(url: string, body: string, requests: number, headers: string[] = []): H2loadRun {
  const args = ['-n', String(requests), '-c', '1', '-t', '1', '-m', String(CONCURRENCY), '-d', body, '-H', 'content-type: application/cbor', ...headers.flatMap((h) => ['-H', h]), url];
  const r = spawnSync('h2load', args, { encoding: 'utf8', timeout: 120_000 });
  const out = `${r.stdout}\n${r.stderr}`;
  const rate = /finished in [\d.]+m?s, ([\d.]+) req\/s/.exec(out);
  const codes = /status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx/.exec(out);
  if (r.status !== 0 || !rate || !codes) throw new Error(`h2load ${url} failed (exit ${r.status}):\n${out}`);
  const ok = Number(codes[1]);
  const failed = Number(codes[2]) + Number(codes[3]) + Number(codes[4]);
  if (failed > 0 || ok !== requests) throw new Error(`h2load ${url}: ${ok} of ${requests} requests answered 2xx (${failed} not):\n${out}`);
  return { throughput: Number(rate[1]), ok, failed };
}

export interface H2loadResult {
  requests: number;
  baseline: { throughput: Spread; rounds: number[] };
  skein: { throughput: Spread; rounds: number[] };
  ratio: Spread;
}

/**
 * Interleaved rounds of h2load against the bare server (one-way TLS) and against the agent in a
 * one-way TLS + token configuration (`tls.clientCerts: "optional"`, bearer-jwt with an EdDSA
 * key, authorization allowing the token's identity to run echo): what an external HTTP/2
 * client gets from skein next to what it gets from the transport.
 */
export async function h2loadRounds(procs: Procs, rounds: number, requests: number, log = (s: string) => process.stderr.write(s)): Promise<H2loadResult> {
  requireH2load();
  const jwtKey = generateKeyPairSync('ed25519');
  const config = agentConfig('bench-token', {
    plugins: {
      dir: join(ROOT, 'plugins'),
      enabled: [{ name: 'bearer-jwt', options: { algorithms: ['EdDSA'], keys: [jwtKey.publicKey.export({ type: 'spki', format: 'pem' }).toString()], audience: 'skein' } }],
    },
    authorization: { allow: [{ identities: ['jwt:bench'], routines: ['echo'] }] },
    tls: { clientCerts: 'optional' },
  });
  const agent = await startAgent(procs, config);
  const base = await startBaselineProc(procs, agent, { oneWay: true });
  const token = await new SignJWT({ sub: 'bench', aud: 'skein' }).setProtectedHeader({ alg: 'EdDSA' }).setExpirationTime('1h').sign(jwtKey.privateKey);
  const body = h2loadBody(procs.dir);
  const path = '/v1/dispatch/echo';
  const runBase = () => h2load(`https://127.0.0.1:${base.port}${path}`, body, requests).throughput;
  const runSkein = () => h2load(`https://127.0.0.1:${agent.port}${path}`, body, requests, [`authorization: Bearer ${token}`]).throughput;
  try {
    // Warm-up: one short run each (connection set-up, JIT, the token's first verification).
    h2load(`https://127.0.0.1:${base.port}${path}`, body, 2000);
    h2load(`https://127.0.0.1:${agent.port}${path}`, body, 2000, [`authorization: Bearer ${token}`]);
    const b: number[] = [];
    const s: number[] = [];
    for (let r = 0; r < rounds; r++) {
      b.push(runBase());
      s.push(runSkein());
      log(`  h2load round ${r + 1}/${rounds}: baseline ${Math.round(b[r]!)} req/s, skein ${Math.round(s[r]!)} req/s\n`);
    }
    return { requests, baseline: { throughput: spread(b), rounds: b }, skein: { throughput: spread(s), rounds: s }, ratio: spread(s.map((x, i) => x / b[i]!)) };
  } finally {
    await procs.stop(base.started.proc);
    await procs.stop(agent.started.proc);
  }
}
