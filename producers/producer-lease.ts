import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from '../shared/logger.js';
import { RunError, type RunStore } from '../shared/run/run-store.js';

/**
 * Where a producer stands in its run, as its heartbeat (or a refused put) last heard: `running`, or
 * why it must stop putting: the run was `cancelled`; this instance is `fenced` (it missed its lease
 * and was marked lost, or another producer registered with its id); the run's state is `gone`.
 */
export type ProducerLeaseState = 'running' | 'cancelled' | 'fenced' | 'gone';

export type ProducerLeaseOptions = {
  run: RunStore;
  producerId: string;
  incarnation: number;
  leaseMs: number;
  heartbeatMs: number;
  log: Logger;
};

/**
 * A registered producer's lease: heartbeats every `heartbeatMs` until `stop()`, and turns the answers
 * into a state and an AbortSignal, so whatever puts (the command's loop, a library user) stops within
 * a heartbeat of a cancel or a fence. A failed heartbeat is only logged: the lease outlasts a few.
 */
export class ProducerLease {
  readonly #opts: ProducerLeaseOptions;
  readonly #ended = new AbortController();
  readonly #stop = new AbortController();
  #state: ProducerLeaseState = 'running';
  readonly #loop: Promise<void>;

  constructor(opts: ProducerLeaseOptions) {
    this.#opts = opts;
    this.#loop = this.#beat();
  }

  get state(): ProducerLeaseState {
    return this.#state;
  }

  /** Fires when the run is cancelled or this instance fenced; its reason is the RunError that says which. */
  get signal(): AbortSignal {
    return this.#ended.signal;
  }

  /** Records a fence learned elsewhere (a put the run refused as `fenced`). */
  fenced(err: RunError): void {
    this.#end('fenced', err);
  }

  /** Stops the heartbeat (the lease then runs out unless the producer reported done). */
  async stop(): Promise<void> {
    this.#stop.abort();
    await this.#loop;
  }

  async #beat(): Promise<void> {
    const { run, producerId, incarnation, leaseMs, heartbeatMs, log } = this.#opts;
    const stop = this.#stop.signal;
    while (!stop.aborted) {
      await sleep(heartbeatMs, undefined, { signal: stop }).catch(() => undefined);
      if (stop.aborted) return;
      const answer = await run.heartbeatProducer(producerId, leaseMs, incarnation).catch((err: unknown) => {
        log.warn({ err: String(err) }, 'heartbeat failed');
        return 'running' as const;
      });
      // A cancelled run keeps the lease alive: the producer still reports done with what it put.
      if (answer === 'running' || answer === 'done') continue;
      const err = endError(answer, run.runId);
      this.#end(err.code === 'cancelled' ? 'cancelled' : err.code === 'gone' ? 'gone' : 'fenced', err);
      if (answer !== 'cancelled') return;
    }
  }

  #end(state: Exclude<ProducerLeaseState, 'running'>, err: RunError): void {
    if (this.#ended.signal.aborted) return;
    this.#state = state;
    this.#ended.abort(err);
  }
}

/** What a heartbeat answer other than running/done means for the producer, as the error its puts get. */
function endError(state: 'cancelled' | 'missing' | 'superseded' | 'lost', runId: string): RunError {
  switch (state) {
    case 'cancelled':
      return new RunError(
        'cancelled',
        `The run "${runId}" was cancelled: this producer puts no more jobs (done() still reports what it put).`,
      );
    case 'missing':
      return new RunError(
        'gone',
        `The run "${runId}"'s state is gone from Redis (restarted without persistence, or flushed): this producer stops.`,
      );
    case 'superseded':
      return new RunError(
        'fenced',
        `In run "${runId}", another producer registered with this producer id: this one is fenced and puts no more jobs.`,
      );
    case 'lost':
      return new RunError(
        'fenced',
        `In run "${runId}", this producer missed its lease and the run marked it lost: it is fenced and puts no more jobs.`,
      );
  }
}
