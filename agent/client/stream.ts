/**
 * A streamed call as an async iterator of the items the routine yields (docs/calls.md,
 * "Stream"). Frames are parsed as they arrive (frames.ts); the iterator holds at most
 * HIGH_WATER items the consumer has not taken, then pauses the HTTP/2 stream, so the client
 * stops granting flow-control credit, the agent stops writing, and the generator pauses at
 * its next yield. Leaving the loop early (break, return, throw), aborting the signal or
 * passing the deadline resets the stream (RST_STREAM CANCEL): the agent stops the generator
 * and its `finally` blocks run.
 *
 * The last frame is `done` (its item count must match) or `error` (thrown as the SkeinError
 * it names, after the items before it); a body that ends without either, or a frame that is
 * too large or undecodable, is SKEIN_ERR_BAD_RESPONSE.
 */
import http2 from 'node:http2';
import { isErrorCode, SkeinError, type ErrorCode } from '../../common/errors/index.ts';
import { decodeResponse, responseError } from './answer.ts';
import { FrameReader, type StreamType } from './frames.ts';

/** Items held for the consumer before the stream is paused, and the level at which it resumes. */
const HIGH_WATER = 16;
const LOW_WATER = 4;

/** An opened request: its HTTP/2 stream, and what the client must hear when it is over. */
export interface OpenedStream {
  stream: http2.ClientHttp2Stream;
  /** Called once when the stream is finished with (the client stops counting it in flight). */
  release(): void;
  /** Why the stream failed, in the client's words (TLS refusal, transport failure). */
  explain(err: unknown): SkeinError;
}

export interface ItemStreamOptions {
  type: StreamType;
  maxFrameBytes: number;
  signal?: AbortSignal;
  /** Client-side deadline for the whole stream (the call's deadline plus a grace period). */
  deadlineMs?: number;
}

export class ItemStream<T = unknown> implements AsyncIterableIterator<T> {
  #open: () => Promise<OpenedStream>;
  #opts: ItemStreamOptions;
  #started: Promise<void> | undefined;
  #opened: OpenedStream | undefined;
  #reader: FrameReader;
  #queue: T[] = [];
  #received = 0;
  #paused = false;
  /** Set once the stream is over: its done frame (no error) or why it failed. */
  #final: { error?: SkeinError } | undefined;
  /** The final outcome was handed to the consumer; next() answers done from then on. */
  #delivered = false;
  #waiter: { resolve: (r: IteratorResult<T>) => void; reject: (err: unknown) => void } | undefined;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #status = 0;
  #errorBody: Buffer[] = [];
  #errorBytes = 0;
  #responseHeaders: http2.IncomingHttpHeaders = {};
  /** The call's request id, once the agent answered (for its log and audit lines). */
  requestId: string | undefined;

  constructor(open: () => Promise<OpenedStream>, opts: ItemStreamOptions) {
    this.#open = open;
    this.#opts = opts;
    this.#reader = new FrameReader(opts.type, opts.maxFrameBytes);
  }

  [Symbol.asyncIterator](): this {
    return this;
  }

  async next(): Promise<IteratorResult<T>> {
    // The request goes out at the first next(): a stream that is never iterated costs nothing.
    this.#started ??= this.#start();
    await this.#started;
    const item = this.#take();
    if (item) return item;
    return new Promise((resolve, reject) => {
      this.#waiter = { resolve, reject };
    });
  }

  /** Leaving the loop early: resets the stream, so the agent stops the generator. */
  async return(): Promise<IteratorResult<T>> {
    this.#fail(new SkeinError('SKEIN_ERR_ABORTED', 'the stream was closed by the caller'), true);
    this.#delivered = true;
    return { value: undefined, done: true };
  }

  async throw(err?: unknown): Promise<IteratorResult<T>> {
    await this.return();
    throw err;
  }

  /** The next item, the end, or undefined when the consumer must wait; throws the final error once. */
  #take(): IteratorResult<T> | undefined {
    if (this.#queue.length > 0) {
      const value = this.#queue.shift()!;
      if (this.#paused && this.#queue.length <= LOW_WATER && !this.#final) {
        this.#paused = false;
        this.#opened?.stream.resume();
      }
      return { value, done: false };
    }
    if (!this.#final) return undefined;
    if (this.#final.error && !this.#delivered) {
      this.#delivered = true;
      throw this.#final.error;
    }
    this.#delivered = true;
    return { value: undefined, done: true };
  }

  #wake(): void {
    const waiter = this.#waiter;
    if (!waiter) return;
    let result: IteratorResult<T> | undefined;
    try {
      result = this.#take();
    } catch (err) {
      this.#waiter = undefined;
      return waiter.reject(err);
    }
    if (!result) return;
    this.#waiter = undefined;
    waiter.resolve(result);
  }

  async #start(): Promise<void> {
    const { signal, deadlineMs } = this.#opts;
    let opened: OpenedStream;
    try {
      if (signal?.aborted) throw new SkeinError('SKEIN_ERR_ABORTED', 'the call was aborted by the caller', { sent: false });
      opened = await this.#open();
    } catch (err) {
      // Nothing was answered (a closed client, a refused connection): the first next() throws it.
      return this.#finish(err instanceof SkeinError ? err : new SkeinError('SKEIN_ERR_TRANSPORT', String(err)));
    }
    this.#opened = opened;
    const { stream } = opened;
    if (this.#final) {
      // return() came while the connection was being opened.
      stream.close(http2.constants.NGHTTP2_CANCEL);
      return opened.release();
    }
    signal?.addEventListener('abort', this.#onAbort, { once: true });
    if (deadlineMs !== undefined) {
      this.#timer = setTimeout(() => this.#fail(new SkeinError('SKEIN_ERR_CLIENT_TIMEOUT', `the stream did not end within ${deadlineMs} ms`), true), deadlineMs);
    }
    stream.on('response', (headers) => this.#onResponse(headers));
    stream.on('data', (chunk: Buffer) => this.#onData(chunk));
    stream.on('end', () => this.#onEnd());
    stream.on('error', (err) => this.#fail(opened.explain(err), false));
    stream.on('close', () => {
      if (!this.#final) this.#fail(opened.explain(new Error(`the stream closed before its last frame (code ${stream.rstCode})`)), false);
    });
  }

  #onAbort = (): void => {
    this.#queue.length = 0;
    this.#fail(new SkeinError('SKEIN_ERR_ABORTED', 'the call was aborted by the caller'), true);
  };

  #onResponse(headers: http2.IncomingHttpHeaders): void {
    this.#responseHeaders = headers;
    this.#status = Number(headers[':status']);
    this.requestId = headers['x-request-id'] === undefined ? undefined : String(headers['x-request-id']);
    if (this.#status !== 200) return; // an ordinary error answer: read in #onEnd
    const type = String(headers['content-type'] ?? '')
      .split(';', 1)[0]!
      .trim()
      .toLowerCase();
    if (type !== this.#opts.type) {
      this.#fail(
        new SkeinError('SKEIN_ERR_BAD_RESPONSE', `asked for a stream (${this.#opts.type}), the agent answered ${type || 'without a content-type'}: does it support streaming calls?`, { status: 200 }),
        true,
      );
    }
  }

  #onData(chunk: Buffer): void {
    if (this.#final) return;
    if (this.#status !== 200) {
      // An error body is small; one that is not is not a skein answer.
      this.#errorBytes += chunk.length;
      if (this.#errorBytes > this.#opts.maxFrameBytes) return this.#fail(new SkeinError('SKEIN_ERR_BAD_RESPONSE', `HTTP ${this.#status}: error body over ${this.#opts.maxFrameBytes} bytes`), true);
      this.#errorBody.push(chunk);
      return;
    }
    try {
      for (const frame of this.#reader.push(chunk)) this.#onFrame(frame);
    } catch (err) {
      return this.#fail(err as SkeinError, true);
    }
    if (!this.#final && this.#queue.length >= HIGH_WATER && !this.#paused) {
      this.#paused = true;
      this.#opened!.stream.pause();
    }
    this.#wake();
  }

  #onFrame(frame: unknown): void {
    if (this.#final) throw new SkeinError('SKEIN_ERR_BAD_RESPONSE', 'a frame after the last (done or error) frame');
    const f = (typeof frame === 'object' && frame !== null && !Array.isArray(frame) ? frame : {}) as Record<string, unknown>;
    const keys = Object.keys(f);
    if (keys.length === 1 && keys[0] === 'item') {
      this.#received++;
      this.#queue.push(f.item as T);
      return;
    }
    if ('done' in f && f.done === true) {
      if (f.items !== this.#received) throw new SkeinError('SKEIN_ERR_BAD_RESPONSE', `the done frame counts ${String(f.items)} items, ${this.#received} arrived`);
      return this.#finish(undefined);
    }
    if (keys.length === 1 && keys[0] === 'error') return this.#finish(frameError(f.error, this.requestId));
    throw new SkeinError('SKEIN_ERR_BAD_RESPONSE', `unexpected stream frame with keys ${JSON.stringify(keys)} (expected item, done or error)`);
  }

  #onEnd(): void {
    if (this.#final) return;
    if (this.#status === 0) return; // no answer at all: 'close' reports the transport failure
    if (this.#status !== 200) return this.#finish(answerError(this.#status, this.#responseHeaders, Buffer.concat(this.#errorBody)));
    const held = this.#reader.pendingBytes ? ` (${this.#reader.pendingBytes} bytes of an unfinished frame)` : '';
    this.#finish(new SkeinError('SKEIN_ERR_BAD_RESPONSE', `the stream ended without a done or error frame after ${this.#received} items${held}: it was cut`, { items: this.#received }));
  }

  /** The stream is over (done, or failed): stop the clocks and hand the outcome on. */
  #finish(error: SkeinError | undefined): void {
    if (this.#final) return;
    this.#final = error ? { error } : {};
    if (this.#timer) clearTimeout(this.#timer);
    this.#opts.signal?.removeEventListener('abort', this.#onAbort);
    this.#opened?.release();
    this.#wake();
  }

  /** Ends the stream with `error`; with `reset`, sends RST_STREAM(CANCEL) so the agent stops the call. */
  #fail(error: SkeinError, reset: boolean): void {
    if (this.#final) return;
    const stream = this.#opened?.stream;
    if (reset && stream && !stream.closed) stream.close(http2.constants.NGHTTP2_CANCEL);
    this.#finish(error);
  }
}

/** The SkeinError an error frame names (an unknown code is reported as a bad response). */
function frameError(value: unknown, requestId: string | undefined): SkeinError {
  const e = (typeof value === 'object' && value !== null ? value : {}) as { code?: unknown; message?: unknown; requestId?: unknown; meta?: Record<string, unknown> };
  if (!isErrorCode(e.code)) return new SkeinError('SKEIN_ERR_BAD_RESPONSE', `an error frame without a known code: ${JSON.stringify(value)?.slice(0, 200)}`);
  return new SkeinError(e.code as ErrorCode, String(e.message ?? e.code), { ...e.meta, requestId: typeof e.requestId === 'string' ? e.requestId : (requestId ?? '') });
}

/** A failure before the first frame: an ordinary error answer (unknown routine, 401, a full queue). */
function answerError(status: number, headers: http2.IncomingHttpHeaders, body: Buffer): SkeinError {
  try {
    const { value, requestId } = decodeResponse(status, headers, body, {});
    return responseError(status, value, requestId);
  } catch (err) {
    return err as SkeinError;
  }
}
