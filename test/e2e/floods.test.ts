/**
 * HTTP/2 floods against the compiled binary, from raw clients on 127.0.0.1: PING and SETTINGS
 * floods (http2.maxControlFramesPerSecond), an endless CONTINUATION, HEADERS beyond the
 * stream limit, and slow readers (http2.writeStallTimeoutMs). Each flooder must be cut off
 * while a well-behaved client on its own connection keeps getting answers, and the agent's
 * resident memory must stay bounded. (Rapid reset is in hardening.test.ts.)
 */
import http2 from 'node:http2';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, postJson } from '../helpers/h2.ts';
import { FLAG, FRAME, dispatchHeaders, frame, hpack, ping, rawConnect, settings } from '../helpers/h2-raw.ts';
import { baseConfig, FIXTURES, startAgent, stopAll, type StartedAgent } from '../helpers/agent.ts';

const { NGHTTP2_ENHANCE_YOUR_CALM, NGHTTP2_CANCEL } = http2.constants;
const MiB = 1024;
/** A generous bound on RSS growth (KiB) while a flood runs: floods must not scale memory. */
const RSS_BOUND_KB = 150 * MiB;

let agent: StartedAgent;

beforeAll(async () => {
  agent = await startAgent({
    config: baseConfig({
      http2: { maxConcurrentStreams: 32, maxControlFramesPerSecond: 100, writeStallTimeoutMs: 1000 },
      routines: { big: { file: join(FIXTURES, 'routines.py') } },
    }),
  });
}, 30_000);
afterAll(async () => {
  await agent?.stop();
  await stopAll();
});

const rssKb = () => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${agent.pid}/status`, 'utf8'))![1]);
const opened = (s: http2.ClientHttp2Session) => new Promise<void>((resolve, reject) => (s.once('connect', () => resolve()), s.once('error', reject)));
const tick = (ms = 0) => new Promise((r) => setTimeout(r, ms));

/**
 * Runs `flood` while a well-behaved client dispatches on its own connection; returns how many
 * answers it got during the flood, the peak RSS growth, and checks it is still served after.
 */
async function whileServing(flood: () => Promise<void>): Promise<{ answers: number; rssGrowthKb: number }> {
  const good = connect(agent.port, agent.pki);
  try {
    await opened(good);
    expect((await postJson(good, 'add', { args: [1, 1] })).json.result).toBe(2);
    const before = rssKb();
    let peak = before;
    let done = false;
    let answers = 0;
    const serving = (async () => {
      for (let i = 0; i < 500 && !done; i++) {
        const r = await postJson(good, 'add', { args: [i, 1] });
        expect(r.status).toBe(200);
        expect(r.json.result).toBe(i + 1);
        answers++;
        peak = Math.max(peak, rssKb());
      }
    })();
    try {
      await flood();
    } finally {
      done = true;
      await serving;
    }
    peak = Math.max(peak, rssKb());
    expect((await postJson(good, 'add', { args: [40, 2] })).json.result).toBe(42);
    return { answers, rssGrowthKb: peak - before };
  } finally {
    good.close();
  }
}

describe('control-frame floods (http2.maxControlFramesPerSecond)', () => {
  it.each([
    ['PING', (i: number) => ping(i), 'PING'],
    ['SETTINGS', () => settings(), 'SETTINGS'],
  ])('a %s flood gets GOAWAY(ENHANCE_YOUR_CALM) and is closed; others keep being served', async (_name, make, reason) => {
    let sent = 0;
    let code: number | undefined;
    let closed = false;
    const { answers, rssGrowthKb } = await whileServing(async () => {
      const raw = await rawConnect(agent.port, { creds: agent.pki });
      try {
        // Bounded: 200 batches of 50 frames (far past 100/s), stopping once cut off.
        for (let b = 0; b < 200 && !raw.closed; b++) {
          await raw.send(Buffer.concat(Array.from({ length: 50 }, (_, k) => make(sent + k))));
          sent += 50;
          await tick(5);
        }
        closed = await raw.waitClosed(5000);
        code = raw.goawayCode();
      } finally {
        raw.destroy();
      }
    });
    expect(code).toBe(NGHTTP2_ENHANCE_YOUR_CALM);
    expect(closed).toBe(true);
    // Cut off long before the flood ran its course.
    expect(sent).toBeLessThan(10_000);
    expect(agent.logs.some((l) => l.msg === 'session closed: flood' && String(l.reason).includes(reason))).toBe(true);
    expect(answers).toBeGreaterThan(0);
    expect(rssGrowthKb).toBeLessThan(RSS_BOUND_KB);
  });

  it('a client pinging below the limit is not cut off', async () => {
    const raw = await rawConnect(agent.port, { creds: agent.pki });
    try {
      // 20 PINGs over a second: well under 100/s.
      for (let i = 0; i < 20; i++) {
        await raw.send(ping(i));
        await tick(50);
      }
      expect(await raw.waitClosed(300)).toBe(false);
      expect(raw.goawayCode()).toBeUndefined();
      expect(raw.frames.filter((f) => f.type === FRAME.PING && f.flags & FLAG.ACK).length).toBe(20);
    } finally {
      raw.destroy();
    }
  });
});

describe('stream floods', () => {
  it('an endless CONTINUATION is cut off with GOAWAY and memory stays bounded', async () => {
    let sentBytes = 0;
    let code: number | undefined;
    const { rssGrowthKb } = await whileServing(async () => {
      const raw = await rawConnect(agent.port, { creds: agent.pki });
      try {
        // HEADERS without END_HEADERS, then CONTINUATION frames of ~16 KiB: up to 50 MiB.
        await raw.send(frame(FRAME.HEADERS, 0, 1, dispatchHeaders('echo')));
        const block = hpack(Array.from({ length: 100 }, (_, i): [string, string] => [`x-flood-${i}`, 'v'.repeat(150)]));
        for (let i = 0; i < 3200 && !raw.closed; i++) {
          await raw.send(frame(FRAME.CONTINUATION, 0, 1, block));
          sentBytes += block.length;
        }
        expect(await raw.waitClosed(5000)).toBe(true);
        code = raw.goawayCode();
      } finally {
        raw.destroy();
      }
    });
    // Cut off at the header-list limit, not after 50 MiB. (The GOAWAY itself may be lost to
    // the TCP reset that follows when the agent closes with the flood still unread.)
    if (code !== undefined) expect(code).not.toBe(0);
    expect(sentBytes).toBeLessThan(10 * 1024 * 1024);
    expect(rssGrowthKb).toBeLessThan(RSS_BOUND_KB);
  });

  it('HEADERS far beyond maxConcurrentStreams are refused, memory stays bounded', async () => {
    let opened = 0;
    let refused = 0;
    let goaway: number | undefined;
    const { answers, rssGrowthKb } = await whileServing(async () => {
      const raw = await rawConnect(agent.port, { creds: agent.pki });
      try {
        // 5,000 streams whose request bodies never end (so each stays open), in batches.
        let id = 1;
        for (let b = 0; b < 50 && !raw.closed; b++) {
          const batch: Buffer[] = [];
          for (let k = 0; k < 100; k++, id += 2) batch.push(frame(FRAME.HEADERS, FLAG.END_HEADERS, id, dispatchHeaders('echo')));
          await raw.send(Buffer.concat(batch));
          opened += 100;
          await tick(5);
        }
        await tick(300);
        refused = raw.frames.filter((f) => f.type === FRAME.RST_STREAM && f.payload.readUInt32BE(0) === http2.constants.NGHTTP2_REFUSED_STREAM).length;
        goaway = raw.goawayCode();
      } finally {
        raw.destroy();
      }
    });
    // Either each stream past the limit is refused, or the connection is cut off.
    expect(refused > 0 || goaway !== undefined).toBe(true);
    expect(opened).toBeGreaterThan(32);
    expect(answers).toBeGreaterThan(0);
    expect(rssGrowthKb).toBeLessThan(RSS_BOUND_KB);
  });
});

describe('slow readers (http2.writeStallTimeoutMs)', () => {
  it('a stream whose large result is never read is reset; the agent keeps serving', async () => {
    const slow = connect(agent.port, agent.pki);
    slow.on('error', () => {});
    const slowOpen = opened(slow);
    let rstCode: number | undefined;
    let took = 0;
    const { answers, rssGrowthKb } = await whileServing(async () => {
      await slowOpen;
      const t0 = Date.now();
      // An 8 MB result, and no 'data' listener: the stream stays paused and the client's flow
      // control window closes after 64 KiB, so the agent's output sits in its buffer.
      const stream = slow.request({ ':method': 'POST', ':path': '/v1/dispatch/big', 'content-type': 'application/json' });
      stream.on('error', () => {});
      stream.end(JSON.stringify({ args: [8_000_000] }));
      rstCode = await new Promise<number | undefined>((resolve) => {
        const timer = setTimeout(() => resolve(undefined), 8000);
        stream.once('close', () => {
          clearTimeout(timer);
          resolve(stream.rstCode);
        });
      });
      took = Date.now() - t0;
    });
    slow.destroy();
    expect(rstCode).toBe(NGHTTP2_CANCEL);
    expect(took).toBeGreaterThanOrEqual(900);
    expect(took).toBeLessThan(6000);
    await agent.waitForLog((l) => l.msg === 'stream reset: client not reading', 2000);
    expect(answers).toBeGreaterThan(0);
    expect(rssGrowthKb).toBeLessThan(RSS_BOUND_KB);
  }, 20_000);

  it('waves of unread large results on several connections are all reset; memory does not pile up', async () => {
    // The connections stay open across waves, so only the guard can free a stalled stream.
    // (At most 4 streams per connection: beyond ~6 stalled streams Bun drops later ones
    // silently on its side, which frees them but leaves the client waiting.)
    const sessions = Array.from({ length: 4 }, () => connect(agent.port, agent.pki));
    for (const s of sessions) s.on('error', () => {});
    const allOpen = Promise.all(sessions.map(opened));
    const codes: Array<number | undefined> = [];
    const { answers, rssGrowthKb } = await whileServing(async () => {
      await allOpen;
      for (let wave = 0; wave < 4; wave++) {
        // 4 connections × 4 streams × 1 MB results, none read: ~16 MB per wave.
        const closes = sessions.flatMap((s) =>
          Array.from({ length: 4 }, () => {
            const st = s.request({ ':method': 'POST', ':path': '/v1/dispatch/big', 'content-type': 'application/json' });
            st.on('error', () => {});
            st.end(JSON.stringify({ args: [1_000_000] }));
            return new Promise<number | undefined>((resolve) => {
              const timer = setTimeout(() => resolve(undefined), 6000);
              st.once('close', () => {
                clearTimeout(timer);
                resolve(st.rstCode);
              });
            });
          }),
        );
        codes.push(...(await Promise.all(closes)));
      }
    });
    for (const s of sessions) s.destroy();
    expect(codes).toEqual(codes.map(() => NGHTTP2_CANCEL));
    expect(codes.length).toBe(64);
    expect(answers).toBeGreaterThan(0);
    expect(rssGrowthKb).toBeLessThan(RSS_BOUND_KB);
  }, 40_000);
});
