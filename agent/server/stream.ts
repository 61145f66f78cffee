/**
 * Streaming responses (docs/calls.md#stream): each item a generator yields is written as one
 * frame as soon as it arrives — `{"item": v}` — and the stream ends with `{"done": true,
 * "items": N}` or `{"error": {...}}`, as NDJSON lines or an RFC 8742 CBOR sequence.
 *
 * Back-pressure: when the HTTP/2 stream's buffer is full (the caller reads slowly and flow
 * control holds our writes), onItem answers false and the pool grants the worker no more
 * credit; 'drain' resumes it. So what a stream holds in the agent is bounded by the stream's
 * high-water mark plus the items in flight (calls.streamBufferItems), whatever the generator
 * would yield.
 *
 * Until the first frame is written nothing is sent: a call that fails before it (the queue is
 * full, the routine raised at once) gets an ordinary error response with its status.
 */
import type { ServerHttp2Stream } from 'node:http2';
import { encodeBody, type MediaType } from '../codec/index.ts';
import type { SkeinError } from '../../common/errors/index.ts';
import type { CallControl, CallHandler } from '../workers/call.ts';

export type StreamType = 'application/x-ndjson' | 'application/cbor-seq';

/** The stream type an accept header asks for (the first one it lists), or undefined for a plain response. */
export function streamTypeOf(accept: string | undefined): StreamType | undefined {
  return acceptedType(accept, STREAM_TYPES);
}

const STREAM_TYPES = ['application/x-ndjson', 'application/cbor-seq'] as const;

/** The first media type an accept header lists that is one of `types` (parameters such as q= ignored). */
export function acceptedType<T extends string>(accept: string | undefined, types: readonly T[]): T | undefined {
  if (!accept || !accept.includes('application/')) return undefined;
  for (const part of accept.split(',')) {
    const base = part.split(';', 1)[0]!.trim().toLowerCase();
    if ((types as readonly string[]).includes(base)) return base as T;
  }
  return undefined;
}

export function encodeFrame(type: StreamType, frame: unknown): Uint8Array {
  if (type === 'application/cbor-seq') return encodeBody('application/cbor', frame);
  const json = encodeBody('application/json' satisfies MediaType, frame);
  const line = new Uint8Array(json.length + 1);
  line.set(json);
  line[json.length] = 0x0a;
  return line;
}

export interface StreamReply {
  /** The handler to give the call. */
  handler: CallHandler;
  /**
   * Settles when the response is committed: true once the first frame went out (the rest is
   * written by the handler), or rejects with the error of a call that failed before any frame.
   */
  committed: Promise<true>;
}

/**
 * A CallHandler writing frames to the request's HTTP/2 stream. `errorFrame` renders a failure
 * after the first frame (the same body an error response would carry, without its status).
 */
export function streamReply(stream: ServerHttp2Stream, type: StreamType, headers: Record<string, string>, errorFrame: (e: SkeinError) => unknown): StreamReply {
  let items = 0;
  let open = false;
  let control: CallControl | undefined;
  let commit!: (v: true) => void;
  let fail!: (e: SkeinError) => void;
  const committed = new Promise<true>((resolve, reject) => {
    commit = resolve;
    fail = reject;
  });
  const begin = () => {
    if (open) return;
    open = true;
    // A caller that reset the stream before the first item gets nothing: the close listener
    // has already cancelled the call.
    if (!stream.destroyed && !stream.closed) stream.respond({ ':status': 200, ...headers, 'content-type': type, 'cache-control': 'no-store' });
    commit(true);
  };
  const write = (frame: unknown): boolean => {
    if (stream.destroyed || stream.writableEnded) return true;
    return stream.write(encodeFrame(type, frame));
  };
  const end = () => {
    if (!stream.destroyed && !stream.writableEnded) stream.end();
  };
  const handler: CallHandler = {
    onStart: (c) => {
      control = c;
    },
    onItem: (value) => {
      begin();
      items++;
      if (write({ item: value })) return true;
      stream.once('drain', () => control?.resume());
      return false;
    },
    onComplete: () => {
      begin();
      write({ done: true, items });
      end();
    },
    onError: (error) => {
      if (!open) return fail(error);
      write({ error: errorFrame(error) });
      end();
    },
  };
  return { handler, committed };
}
