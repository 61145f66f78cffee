/**
 * Group commit of the async calls store through the compiled binary (docs/calls.md "Nothing
 * accepted is lost"): submissions that arrive together share a commit, and each 202 still
 * comes only after the commit holding its call — 200 concurrent submissions are all there
 * after a kill -9 right after the last 202. A commit that fails (the store's file system is
 * full: a tmpfs of its own in a private mount namespace, filled from inside it) fails every
 * submission in it with 503 SKEIN_ERR_STORE_WRITE, stores none of them, and the agent keeps
 * serving: sync calls meanwhile, submissions again once there is room.
 */
import { spawn } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import type http2 from 'node:http2';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { connect, postJson, request, type RawResponse } from '../helpers/h2.ts';
import { baseConfig, EXAMPLES, startAgent, stopAll, tempDir } from '../helpers/agent.ts';

afterAll(stopAll);

type Json = Record<string, any>;

async function submit(s: http2.ClientHttp2Session, routine: string, args: unknown[]): Promise<RawResponse & { json: Json }> {
  const r = await request(s, { ':method': 'POST', ':path': `/v1/calls/${routine}`, 'content-type': 'application/json' }, JSON.stringify({ args }));
  return { ...r, json: r.body.length ? JSON.parse(r.body.toString()) : {} };
}

async function get(s: http2.ClientHttp2Session, path: string): Promise<RawResponse & { json: Json }> {
  const r = await request(s, { ':method': 'GET', ':path': path });
  return { ...r, json: JSON.parse(r.body.toString()) };
}

/** Runs a shell script in the agent's mount namespace (nsenter), bounded; resolves with its exit code and stderr. */
function inAgentMounts(pid: number, script: string, ...args: string[]): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve) => {
    const proc = spawn('nsenter', ['-t', String(pid), '-m', 'sh', '-c', script, 'sh', ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    proc.stderr!.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => proc.kill('SIGKILL'), 30_000);
    proc.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stderr });
    });
  });
}

describe('group commit: durable before each 202', () => {
  it('200 concurrent submissions are all acknowledged, and all there after kill -9 right after the last 202', async () => {
    const dir = tempDir();
    // One worker: most of the calls are still queued when the agent is killed. Idempotent, so
    // the one cut off mid-run runs again after the restart and every call ends succeeded.
    const config = baseConfig({ workers: { poolSize: 1 }, routines: { echo: { file: EXAMPLES, idempotent: true } } });
    let agent = await startAgent({ dir, config });
    let s = connect(agent.port, agent.pki);
    const all = await Promise.all(Array.from({ length: 200 }, (_, i) => submit(s, 'echo', [`n${i}`])));
    agent.proc.kill('SIGKILL');
    for (const r of all) expect(r.status, r.body.toString()).toBe(202);
    s.close();
    await agent.stop();

    agent = await startAgent({ dir, config });
    s = connect(agent.port, agent.pki);
    for (const [i, r] of all.entries()) {
      const done = await get(s, `/v1/calls/${r.json.id}?waitMs=20000`);
      expect(done.status, done.body.toString()).toBe(200);
      expect(done.json).toMatchObject({ status: 'succeeded', result: `n${i}` });
    }
    s.close();
    await agent.stop();
  });
});

describe('group commit: a commit that fails', () => {
  it('a full file system fails every submission of the commit with 503 STORE_WRITE, stores none, and the agent keeps serving', async () => {
    const dir = tempDir();
    const storeDir = join(dir, 'store');
    mkdirSync(storeDir);
    // The store on a 1 MiB tmpfs of its own, mounted in a private mount namespace (root and
    // util-linux's unshare, as in CI): only the agent sees it, and it can really fill up.
    const script = 'mount -t tmpfs -o size=1m,mode=0700 skein-test "$1" && shift && exec "$@"';
    const agent = await startAgent({
      dir,
      config: baseConfig({ workers: { poolSize: 1 }, calls: { store: join(storeDir, 'calls.db') } }),
      wrap: ['unshare', '--mount', '--propagation', 'private', 'sh', '-c', script, 'sh', storeDir],
    });
    const s = connect(agent.port, agent.pki);
    const before = await submit(s, 'echo', ['before']);
    expect(before.status).toBe(202);
    expect((await get(s, `/v1/calls/${before.json.id}?waitMs=20000`)).json).toMatchObject({ status: 'succeeded', result: 'before' });

    // Fill the store's file system: dd stops at ENOSPC (exit 1); what matters is that it is full.
    const fill = await inAgentMounts(agent.pid, 'dd if=/dev/zero of="$1/fill" bs=64k 2>&1 >/dev/null | grep -q "No space left" ', storeDir);
    expect(fill.code, fill.stderr).toBe(0);

    // Submitted together: they share a commit, and it fails for all of them.
    const refused = await Promise.all(Array.from({ length: 20 }, (_, i) => submit(s, 'echo', [`lost${i}`, 'x'.repeat(2000)])));
    for (const r of refused) {
      expect(r.status, r.body.toString()).toBe(503);
      expect(r.json.code).toBe('SKEIN_ERR_STORE_WRITE');
      expect(r.json.message).toMatch(
        new RegExp(`^the async results store could not commit to ${storeDir}/calls\\.db \\(calls\\.store\\): .*\\(SQLITE_FULL\\); nothing in that commit was stored, so this request had no effect`),
      );
    }
    // The agent keeps serving: sync calls, reads of the store.
    const sync = await postJson(s, 'echo', { args: ['still here'] });
    expect(sync.status).toBe(200);
    expect(sync.json.result).toBe('still here');
    const listed = await get(s, '/v1/calls?limit=1000');
    expect(listed.json.calls.map((c: Json) => c.id)).toEqual([before.json.id]);

    // Room again: submissions are accepted and run.
    const freed = await inAgentMounts(agent.pid, 'rm "$1/fill"', storeDir);
    expect(freed.code, freed.stderr).toBe(0);
    const after = await submit(s, 'echo', ['after']);
    expect(after.status, after.body.toString()).toBe(202);
    expect((await get(s, `/v1/calls/${after.json.id}?waitMs=20000`)).json).toMatchObject({ status: 'succeeded', result: 'after' });
    s.close();
    await agent.stop();
  });
});
