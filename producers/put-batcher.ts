/**
 * Coalesces concurrent puts into batches. A server that enqueues one job per request has many puts
 * in flight at once; sending each on its own costs a round trip and a script call apiece. Here
 * every put made while a batch is on its way (or within `lingerMs`) rides in the next batch: one
 * round trip for up to `maxBatch` jobs. Each caller is resolved only when the batch that
 * carried its jobs is stored, and a failed batch rejects only the calls it carried.
 */
export type BatcherOptions = {
  /** Jobs per batch at most (a single put of more jobs goes alone, whole). */
  maxBatch: number;
  /** Batches on their way to Redis at once, per shard. */
  maxInFlight: number;
  /** How long a lone put waits for company when nothing is in flight (0: until the current tick ends). */
  lingerMs: number;
};

type Unit<T> = { items: readonly T[]; resolve: () => void; reject: (err: unknown) => void };

export class PutBatcher<T> {
  private readonly queued: Unit<T>[][];
  private readonly inFlight: number[];
  private readonly scheduled: boolean[];
  /** Puts submitted and not yet settled, and who waits for that to reach zero. */
  private pending = 0;
  private idleWaiters: (() => void)[] = [];

  constructor(
    shards: number,
    private readonly send: (shard: number, items: readonly T[]) => Promise<void>,
    private readonly opts: BatcherOptions,
  ) {
    this.queued = Array.from({ length: shards }, () => []);
    this.inFlight = Array.from({ length: shards }, () => 0);
    this.scheduled = Array.from({ length: shards }, () => false);
  }

  /** Resolves once Redis has stored every item (they go out together, in submission order). */
  submit(shard: number, items: readonly T[]): Promise<void> {
    this.pending++;
    return new Promise<void>((resolve, reject) => {
      this.queued[shard]!.push({ items, resolve, reject });
      this.schedule(shard);
    }).finally(() => {
      if (--this.pending > 0) return;
      const waiters = this.idleWaiters;
      this.idleWaiters = [];
      waiters.forEach((w) => w());
    });
  }

  /** Resolves once every put submitted so far has settled (stored or rejected). */
  idle(): Promise<void> {
    if (this.pending === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  private schedule(shard: number): void {
    if (this.scheduled[shard]) return;
    this.scheduled[shard] = true;
    const run = () => {
      this.scheduled[shard] = false;
      this.pump(shard);
    };
    // Puts made in the same tick (or the linger) share a batch; a batch in flight gathers the rest.
    if (this.opts.lingerMs > 0 && this.inFlight[shard] === 0) setTimeout(run, this.opts.lingerMs);
    else queueMicrotask(run);
  }

  private pump(shard: number): void {
    const queue = this.queued[shard]!;
    while (queue.length > 0 && this.inFlight[shard]! < this.opts.maxInFlight) {
      const units: Unit<T>[] = [];
      let size = 0;
      while (
        queue.length > 0 &&
        (units.length === 0 || size + queue[0]!.items.length <= this.opts.maxBatch)
      ) {
        const unit = queue.shift()!;
        units.push(unit);
        size += unit.items.length;
      }
      this.inFlight[shard]!++;
      void this.send(
        shard,
        units.flatMap((u) => u.items),
      )
        .then(
          () => units.forEach((u) => u.resolve()),
          (err: unknown) => units.forEach((u) => u.reject(err)),
        )
        .finally(() => {
          this.inFlight[shard]!--;
          if (this.queued[shard]!.length > 0) this.schedule(shard);
        });
    }
  }
}
