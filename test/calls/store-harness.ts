/**
 * Runs under Bun (bun:sqlite exists only there), spawned by store.test.ts: exercises the
 * results store and the runner against a fake pool, and prints one JSON object of findings.
 * Argument: a fresh folder for the store files.
 */
import { join } from 'node:path';
import { CallStore } from '../../agent/calls/store.ts';
import { CallRunner } from '../../agent/calls/runner.ts';
import { GroupCommit } from '../../agent/calls/group-commit.ts';
import { Database } from 'bun:sqlite';
import type { CallHandler, CallRequest } from '../../agent/workers/call.ts';
import { SkeinError } from '../../common/errors/index.ts';

const dir = process.argv[2]!;
const out: Record<string, unknown> = {};
let clock = 1_000_000;
const now = () => clock;
const sub = (owner: string, extra: Record<string, unknown> = {}) => ({ owner, routine: 'echo', args: [1], kwargs: {}, priority: 'normal' as const, timeoutMs: 1000, ...extra });
const quiet = { debug() {}, info() {}, warn() {}, error() {}, enabled: () => false } as never;

// Values come back as they went in: bytes, big integers, "__proto__" keys, nesting.
{
  const store = await CallStore.open({ path: join(dir, 'a.db'), maxStored: 3, maxBytes: 10_000, resultTtlMs: 5000, now });
  const weird = JSON.parse('{"__proto__": {"x": 1}}');
  const c = await store.submit(sub('o1', { args: [new Uint8Array([0, 1, 255]), 2 ** 60, -1.5, weird], kwargs: { k: 'v' } }));
  const r = store.runnable(c.id)!;
  out.roundTrip = {
    bytes: r.args[0] instanceof Uint8Array ? [...(r.args[0] as Uint8Array)] : typeof r.args[0],
    big: r.args[1] === 2 ** 60,
    float: r.args[2],
    proto: Object.keys(r.args[3] as object),
    kwargs: r.kwargs,
    idLength: c.id.length,
  };
  // Bounds: a 4th call is refused, the 3 accepted remain.
  await store.submit(sub('o1'));
  await store.submit(sub('o2'));
  try {
    await store.submit(sub('o3'));
    out.full = 'accepted';
  } catch (err) {
    out.full = { code: (err as SkeinError).code, message: (err as Error).message, retry: (err as SkeinError).details.retryAfterSeconds };
  }
  out.stillThere = store.list('o1', { limit: 10 }).length + store.list('o2', { limit: 10 }).length;
  // A finished call expires resultTtlMs after it finished; then there is room again.
  await store.start(c.id);
  await store.finish(c.id, { ok: true, value: { out: new Uint8Array([7]) } });
  const done = store.get(c.id)!;
  out.finished = { status: done.status, result: [...(done.result as { out: Uint8Array }).out] };
  clock += 5000;
  out.expiredReadsAbsent = store.get(c.id) === undefined;
  await store.submit(sub('o3')); // sweeps on demand
  out.afterSweep = store.stats.stored;
  await store.close();
}

// A result larger than the store's byte budget is stored as a failure, not lost.
{
  const store = await CallStore.open({ path: join(dir, 'b.db'), maxStored: 10, maxBytes: 200, resultTtlMs: 5000, now });
  const c = await store.submit(sub('o1'));
  await store.start(c.id);
  const f = (await store.finish(c.id, { ok: true, value: 'x'.repeat(500) }))!;
  out.tooLarge = { status: f.status, code: f.error?.code, message: f.error?.message };
  await store.close();
}

// Recovery: running → interrupted, or queued for an idempotent routine; survives reopening.
{
  const path = join(dir, 'c.db');
  let store = await CallStore.open({ path, maxStored: 10, maxBytes: 10_000, resultTtlMs: 5000, now });
  const a = await store.submit(sub('o1', { routine: 'plain' }));
  const b = await store.submit(sub('o1', { routine: 'again' }));
  const q = await store.submit(sub('o1'));
  await store.start(a.id);
  await store.start(b.id);
  await store.destroy();
  store = await CallStore.open({ path, maxStored: 10, maxBytes: 10_000, resultTtlMs: 5000, now });
  store.recover((r) => r === 'again');
  out.recovered = { a: store.get(a.id)!.status, b: store.get(b.id)!.status, q: store.get(q.id)!.status, errorA: store.get(a.id)!.error?.code };
  await store.close();
}

// The runner: priority first, owners in turn, submission order within an owner; one in flight.
{
  const store = await CallStore.open({ path: join(dir, 'd.db'), maxStored: 100, maxBytes: 100_000, resultTtlMs: 60_000 });
  const order: string[] = [];
  const pending: Array<() => void> = [];
  const pool = {
    call(req: CallRequest, h: CallHandler) {
      h.onStart?.({ resume() {} });
      order.push(`${req.args[0]}`);
      pending.push(() => h.onComplete(req.args[0]));
    },
  };
  for (let i = 0; i < 4; i++) await store.submit(sub('flood', { args: [`flood${i}`], routine: 'r' }));
  await store.submit(sub('other', { args: ['other0'], routine: 'r' }));
  await store.submit(sub('other', { args: ['other1'], routine: 'r' }));
  await store.submit(sub('late', { args: ['high0'], routine: 'r', priority: 'high' }));
  await store.submit(sub('x', { args: ['gone'], routine: 'removed' }));
  const runner = new CallRunner({ store, pool, routine: (n) => (n === 'r' ? { idempotent: false } : undefined), maxInFlight: 1, agingMs: 3_600_000, queueSlackMs: 1000, log: quiet });
  runner.start();
  // Each call reaches the pool once its `running` is committed (a turn of the loop later).
  const turns = async () => {
    for (let t = 0; t < 5 && !pending.length; t++) await new Promise((r) => setImmediate(r));
  };
  for (let i = 0; i < 20; i++) {
    await turns();
    if (!pending.length) break;
    pending.shift()!();
  }
  out.order = order;
  out.unknownRoutine = store.list('x', { limit: 5 }).map((c) => [c.status, c.error?.code]);
  await runner.close();
  await store.close();
}

// The runner: deadline counts from the start; DELETE of a running call aborts it; wait() wakes.
{
  const store = await CallStore.open({ path: join(dir, 'e.db'), maxStored: 100, maxBytes: 100_000, resultTtlMs: 60_000 });
  const aborted: string[] = [];
  const pool = {
    call(req: CallRequest, h: CallHandler) {
      h.onStart?.({ resume() {} });
      req.signal!.addEventListener('abort', () => {
        aborted.push(String(req.args[0]));
        h.onError(new SkeinError('SKEIN_ERR_ABORTED', 'the caller cancelled the call'));
      });
    },
  };
  const slow = await store.submit(sub('o', { args: ['slow'], routine: 'r', timeoutMs: 50 }));
  const runner = new CallRunner({ store, pool, routine: () => ({ idempotent: false }), maxInFlight: 2, agingMs: 1000, queueSlackMs: 1000, log: quiet });
  runner.start();
  const t0 = Date.now();
  await runner.wait(slow.id, 5000);
  out.deadline = { waitedMs: Date.now() - t0, status: store.get(slow.id)!.status, code: store.get(slow.id)!.error?.code };
  const held = await store.submit(sub('o', { args: ['held'], routine: 'r', timeoutMs: 60_000 }));
  runner.submitted();
  const cancelled = (await runner.cancel(held.id))!;
  out.cancel = { status: cancelled.status, aborted };
  await runner.close();
  await store.close();
}

// Group commit: the writes of one turn are one transaction — one failing fails them all and
// keeps none; the next turn commits on its own.
{
  const db = new Database(join(dir, 'g.db'), { create: true, strict: true });
  db.exec('PRAGMA journal_mode = WAL');
  db.exec('CREATE TABLE t (v INTEGER)');
  const commits = new GroupCommit(db, (err) => new Error(`commit failed: ${(err as Error).message}`));
  const insert = (v: number) => () => db.query('INSERT INTO t VALUES ($v)').run({ v }).changes;
  const turn = await Promise.allSettled([
    commits.write(insert(1)),
    commits.write(() => {
      throw new Error('boom');
    }),
    commits.write(insert(3)),
  ]);
  const next = await commits.write(insert(4));
  out.groupCommit = {
    turn: turn.map((r) => (r.status === 'fulfilled' ? r.value : (r.reason as Error).message)),
    next,
    rows: (db.query('SELECT v FROM t').all() as Array<{ v: number }>).map((r) => r.v),
  };
  db.close();
}

// Writes keep their order: a result committed before a cancellation stands (the cancel finds
// the call finished); the oldest queued call of a level is found by an index, not a sort.
{
  const path = join(dir, 'h.db');
  const store = await CallStore.open({ path, maxStored: 10, maxBytes: 10_000, resultTtlMs: 60_000 });
  const c = await store.submit(sub('o'));
  await store.start(c.id);
  const [finished, cancelled] = await Promise.all([store.finish(c.id, { ok: true, value: 1 }), store.cancel(c.id)]);
  out.ordered = { finished: finished?.status, cancelled: cancelled ?? null, status: store.get(c.id)!.status };
  // The store holds its file exclusively while open (one agent per store): peek after it closed.
  await store.close();
  const peek = new Database(path, { readonly: true });
  out.oldestPlan = (peek.query("EXPLAIN QUERY PLAN SELECT submitted_at AS at FROM calls WHERE status = 'queued' AND priority = 1 ORDER BY seq LIMIT 1").all() as Array<{ detail: string }>)
    .map((r) => r.detail)
    .join('; ');
  peek.close();
}

console.log(JSON.stringify(out));
