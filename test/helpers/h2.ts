/**
 * A raw node:http2 client for tests that need to see status lines and headers exactly as
 * sent (Retry-After, content-type), or to send bodies no well-behaved client would.
 */
import http2 from 'node:http2';
import { readFileSync } from 'node:fs';

export interface RawResponse {
  status: number;
  headers: http2.IncomingHttpHeaders;
  body: Buffer;
}

export interface Creds {
  cert: string;
  key: string;
  ca: string;
}

export function connect(port: number, creds: Creds): http2.ClientHttp2Session {
  return http2.connect(`https://127.0.0.1:${port}`, {
    cert: readFileSync(creds.cert),
    key: readFileSync(creds.key),
    ca: readFileSync(creds.ca),
  });
}

export function request(session: http2.ClientHttp2Session, headers: http2.OutgoingHttpHeaders, body?: Buffer | string): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const stream = session.request(headers);
    const chunks: Buffer[] = [];
    let responseHeaders: http2.IncomingHttpHeaders = {};
    stream.on('response', (h) => (responseHeaders = h));
    stream.on('data', (c: Buffer) => chunks.push(c));
    stream.on('end', () => resolve({ status: Number(responseHeaders[':status']), headers: responseHeaders, body: Buffer.concat(chunks) }));
    stream.on('error', reject);
    stream.end(body);
  });
}

/** POST /v1/dispatch/<routine> with a JSON body on an existing session. */
export function postJson(session: http2.ClientHttp2Session, routine: string, value: unknown, extra: http2.OutgoingHttpHeaders = {}): Promise<RawResponse & { json: any }> {
  return request(session, { ':method': 'POST', ':path': `/v1/dispatch/${routine}`, 'content-type': 'application/json', ...extra }, JSON.stringify(value)).then((r) => ({
    ...r,
    json: r.body.length ? JSON.parse(r.body.toString()) : undefined,
  }));
}
