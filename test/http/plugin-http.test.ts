/**
 * ctx.http's accounting: requests a plugin makes in setup (before the agent's metrics reach the
 * auth pipeline) are kept and counted once bound; later ones go straight to the counter.
 */
import { describe, expect, it } from 'vitest';
import { AgentMetrics } from '../../agent/metrics/index.ts';
import { createPluginHttp, HttpTally } from '../../agent/plugin-host/http.ts';

describe('plugin ctx.http accounting', () => {
  it('counts refusals by code before and after the tally is bound to the metrics', async () => {
    const tally = new HttpTally('idp-check');
    const http = createPluginHttp('idp-check', { allowedHosts: ['idp.test'], allowPrivateAddresses: false, key: 'plugins.enabled[3]' }, tally);
    await expect(http.fetchJson('https://other.test/x')).rejects.toMatchObject({ code: 'SKEIN_ERR_HTTP_HOST', message: expect.stringContaining('plugins.enabled[3].allowedHosts') });
    await expect(http.request('http://idp.test/x')).rejects.toMatchObject({ code: 'SKEIN_ERR_HTTP_URL' });
    const metrics = new AgentMetrics();
    tally.bind(metrics);
    await expect(http.request('https://idp.test/x', { maxBytes: 0 })).rejects.toMatchObject({ code: 'SKEIN_ERR_HTTP_OPTIONS' });
    await expect(http.request('https://127.0.0.1/x')).rejects.toMatchObject({ code: 'SKEIN_ERR_HTTP_HOST' });
    const text = await metrics.text();
    expect(text).toContain('skein_plugin_http_requests_total{plugin="idp-check",outcome="SKEIN_ERR_HTTP_HOST"} 2');
    expect(text).toContain('skein_plugin_http_requests_total{plugin="idp-check",outcome="SKEIN_ERR_HTTP_URL"} 1');
    expect(text).toContain('skein_plugin_http_requests_total{plugin="idp-check",outcome="SKEIN_ERR_HTTP_OPTIONS"} 1');
  });
});
