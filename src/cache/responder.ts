// A Responder over an undici dispatch handler: the cache answers a request itself, as undici's own
// cache interceptor does, with a controller that honours the consumer's pause/resume/abort.
import { randomUUID } from 'node:crypto';
import { STATUS_CODES } from 'node:http';
import type { Dispatcher } from 'undici';
import type { Responder } from './serve.js';

export class HandlerResponder implements Responder {
  private readonly queue: Buffer[] = [];
  private queued = 0;
  private isPaused = false;
  private ending = false;
  private finished = false;
  private abortReason: Error | undefined;
  private closeListeners: Array<() => void> = [];
  readonly controller: Dispatcher.DispatchController;

  constructor(private readonly handler: Dispatcher.DispatchHandler) {
    // eslint-disable-next-line @typescript-eslint/no-this-alias
    const self = this;
    this.controller = {
      abort: (reason: Error) => self.abort(reason),
      pause: () => void (self.isPaused = true),
      resume: () => self.resume(),
      get paused() {
        return self.isPaused;
      },
      get aborted() {
        return self.abortReason !== undefined;
      },
      get reason() {
        return self.abortReason ?? null;
      },
    } as Dispatcher.DispatchController;
  }

  /** Whether the consumer has been told the request started (just before the first response byte). */
  started = false;

  get bufferedBytes(): number {
    return this.queued;
  }

  onClose(fn: () => void): void {
    if (this.abortReason) fn();
    else this.closeListeners.push(fn);
  }

  begin(status: number, headers: Record<string, string>): void {
    // onRequestStart only now: a request the cache gives up on reaches the real agent untouched.
    if (!this.started) {
      this.started = true;
      this.handler.onRequestStart?.(this.controller, {});
    }
    if (this.abortReason) return;
    // Every answer carries an audit ID of its own, as the apiserver's do (this one never reached it).
    this.handler.onResponseStart?.(this.controller, status, { 'audit-id': randomUUID(), ...headers }, STATUS_CODES[status] ?? '');
  }

  write(text: string): void {
    if (this.abortReason || this.finished || this.ending) return;
    const chunk = Buffer.from(text);
    if (this.isPaused || this.queue.length > 0) {
      this.queue.push(chunk);
      this.queued += chunk.length;
    } else this.handler.onResponseData?.(this.controller, chunk);
  }

  end(): void {
    if (this.abortReason || this.finished) return;
    this.ending = true;
    if (this.queue.length === 0) this.finish();
  }

  private finish(): void {
    this.finished = true;
    this.closeListeners = [];
    this.handler.onResponseEnd?.(this.controller, {});
  }

  private resume(): void {
    this.isPaused = false;
    while (this.queue.length > 0 && !this.isPaused && !this.abortReason) {
      const chunk = this.queue.shift()!;
      this.queued -= chunk.length;
      this.handler.onResponseData?.(this.controller, chunk);
    }
    if (this.ending && this.queue.length === 0 && !this.finished && !this.abortReason) this.finish();
  }

  private abort(reason: Error): void {
    if (this.abortReason || this.finished) return;
    this.abortReason = reason ?? new Error('aborted');
    this.queue.length = 0;
    this.queued = 0;
    for (const fn of this.closeListeners.splice(0)) fn();
    this.handler.onResponseError?.(this.controller, this.abortReason);
  }

  /** The cache failed after the response began: the consumer sees an error, never a short answer. */
  fail(err: Error): void {
    this.abort(err);
  }
}
