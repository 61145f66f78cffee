/**
 * AgentMetrics in-process: scrape-time sources (advertisement counters, peers, canary,
 * certificate expiry) and the recorders' label sets.
 */
import { describe, expect, it } from 'vitest';
import { AgentMetrics } from '../../agent/metrics/index.ts';
import { CANARY_PROBES } from '../../agent/sandbox/index.ts';

describe('AgentMetrics', () => {
  it('reads advertisement counters and peers at scrape time, following their changes', async () => {
    const m = new AgentMetrics();
    const counts: Record<string, number> = { accepted: 3, 'bad-signature': 0, replay: 2 };
    let peers = 1;
    m.bind({ adverts: () => counts, peers: () => peers });
    let text = await m.text();
    expect(text).toContain('skein_adverts_total{result="accepted"} 3');
    expect(text).toContain('skein_adverts_total{result="bad-signature"} 0');
    expect(text).toContain('skein_adverts_total{result="replay"} 2');
    expect(text).toContain('skein_peers 1');
    counts.accepted = 10;
    peers = 4;
    text = await m.text();
    expect(text).toContain('skein_adverts_total{result="accepted"} 10');
    expect(text).toContain('skein_peers 4');
  });

  it('maps canary results to 1/0 and ignores errno details; sets the expiry in seconds', async () => {
    const m = new AgentMetrics();
    m.bind({
      canary: () => ({ ...Object.fromEntries(CANARY_PROBES.map((p) => [p, 'blocked'])), fork: 'allowed', errno: { socket: 'EPERM' } }),
      certificateNotAfter: () => new Date(Date.UTC(2030, 0, 1)),
    });
    const text = await m.text();
    expect(text).toContain('skein_sandbox_canary_blocked{probe="socket"} 1');
    expect(text).toContain('skein_sandbox_canary_blocked{probe="fork"} 0');
    expect(text).not.toContain('probe="errno"');
    // Every probe of the canary's one list (agent/sandbox CANARY_PROBES) has a series: metrics keeps no copy of it.
    for (const probe of CANARY_PROBES) expect(text).toMatch(new RegExp(`skein_sandbox_canary_blocked\\{probe="${probe}"\\} [01]`));
    expect(text).toContain(`skein_tls_certificate_expiry_timestamp_seconds ${Date.UTC(2030, 0, 1) / 1000}`);
  });

  it('reports the queue depth by priority at scrape time', async () => {
    const m = new AgentMetrics();
    const depth = { high: 0, normal: 7, low: 2 };
    m.bind({ queueDepth: () => depth });
    let text = await m.text();
    expect(text).toContain('skein_queue_depth{priority="high"} 0');
    expect(text).toContain('skein_queue_depth{priority="normal"} 7');
    expect(text).toContain('skein_queue_depth{priority="low"} 2');
    depth.normal = 0;
    text = await m.text();
    expect(text).toContain('skein_queue_depth{priority="normal"} 0');
  });

  it('records dispatches, rejections and worker events with their labels', async () => {
    const m = new AgentMetrics();
    m.dispatch('echo', 'ok', 0.0002);
    m.dispatch('echo', 'ok', 0.002);
    m.dispatch('echo', 'SKEIN_ERR_ROUTINE_RAISED', 40);
    m.authRejected('authn', 'BAD_TOKEN');
    m.workerEvent('exit', 'crash');
    const text = await m.text();
    expect(text).toContain('skein_dispatches_total{routine="echo",outcome="ok"} 2');
    expect(text).toContain('skein_dispatches_total{routine="echo",outcome="SKEIN_ERR_ROUTINE_RAISED"} 1');
    expect(text).toContain('skein_dispatch_duration_seconds_bucket{le="0.00025",routine="echo"} 1');
    expect(text).toContain('skein_dispatch_duration_seconds_bucket{le="30",routine="echo"} 2');
    expect(text).toContain('skein_dispatch_duration_seconds_count{routine="echo"} 3');
    expect(text).toContain('skein_auth_rejections_total{kind="authn",reason="BAD_TOKEN"} 1');
    expect(text).toContain('skein_worker_events_total{event="exit",reason="crash"} 1');
  });
});
