// Bounded concurrency for one purpose (filtered LIST bodies, watch seeds): a burst takes turns so
// that decoded lists do not pile up in memory, and no holder can keep the others waiting for long —
// a waiter gives up after waitMs with SlotsBusyError (answered 503 + Retry-After).

export class SlotsBusyError extends Error {
  override name = 'SlotsBusyError';
}

export class Slots {
  private busy = 0;
  private readonly queue: Array<(granted: boolean) => void> = [];

  constructor(
    readonly purpose: string,
    readonly size: number,
    readonly waitMs: number,
  ) {}

  async run<T>(fn: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    await this.acquire(signal);
    try {
      return await fn();
    } finally {
      this.release();
    }
  }

  private acquire(signal?: AbortSignal): Promise<void> {
    if (this.busy < this.size) {
      this.busy++;
      return Promise.resolve();
    }
    return new Promise<void>((resolve, reject) => {
      const done = (granted: boolean) => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        if (granted) resolve();
        else reject(signal?.aborted ? signal.reason : new SlotsBusyError(`poolview: too many concurrent ${this.purpose}; retry`));
      };
      const leave = () => {
        const at = this.queue.indexOf(done);
        if (at !== -1) this.queue.splice(at, 1);
        done(false);
      };
      const onAbort = () => leave();
      const timer = setTimeout(leave, this.waitMs);
      signal?.addEventListener('abort', onAbort, { once: true });
      this.queue.push(done);
    });
  }

  private release(): void {
    const next = this.queue.shift();
    if (next) next(true); // the slot passes on: busy stays
    else this.busy--;
  }
}
