/** Why a run has not joined yet, or that it has. */
export type JoinReason =
  | 'joined-now'
  | 'joined'
  | 'producers-missing'
  | 'producers-running'
  | 'producers-settling'
  | 'jobs-unfinished'
  | 'no-run'
  /** Waited longer than its abandon time for producers that never registered: it will never join. */
  | 'abandoned'
  /** The one call that abandoned the run. */
  | 'abandoned-now';

export type JoinAttempt = {
  reason: JoinReason;
  /** True for the one call, across all processes, that flipped the run to joined. */
  joinedNow: boolean;
  joined: boolean;
  /** joinedAt (ms) when joined, else the count behind the reason (producers missing, jobs open...). */
  detail: number;
};

export type ProducerState = 'running' | 'done' | 'lost';
export type ConsumerState = 'starting' | 'idle' | 'busy' | 'cancelling' | 'cancelled' | 'stopped';

export type ProducerRecord = {
  id: string;
  host: string;
  pid: number;
  state: ProducerState;
  produced: number;
  /** 1 for the first registration; a restart with the same id registers the next. */
  incarnation?: number;
  restartedAt?: number;
  startedAt: number;
  heartbeatAt: number;
  doneAt?: number;
  lostAt?: number;
  /** Acknowledgements this producer saw that the run no longer holds. */
  lostAcks?: number;
  /** Done before its planned jobs: a signal stopped it. */
  stoppedEarly?: boolean;
};

export type ConsumerRecord = {
  id: string;
  host: string;
  pid: number;
  concurrency: number;
  state: ConsumerState;
  jobsDone: number;
  jobsFailed: number;
  /** Jobs it recorded cancelled (absent until the first). */
  jobsCancelled?: number;
  current: string[];
  /**
   * Jobs recorded cancelled or timed out whose handler ignored the abort and is still running here
   * (it holds no slot, but it still uses the process).
   */
  runaway?: string[];
  startedAt: number;
  heartbeatAt: number;
  cancelledAt?: number;
  cancelReason?: string;
  /**
   * Jobs finished (completed or failed) per run. A consumer takes every job on its queue, whatever
   * its run (one queue, many runs); its own run only decides when it stops.
   */
  runs?: Record<string, number>;
};

export type FinishOutcome = 'completed' | 'failed' | 'cancelled';

/**
 * A job the run enqueues once, when it joins: `always` after every join, `success` only when no job
 * failed or was removed. Its BullMQ job id is `<run>+<n>@<name>`; it is trimmed with the run's jobs.
 */
export type CallbackSpec = {
  name: string;
  type: string;
  when: 'always' | 'success';
  payload?: unknown;
  attempts: number;
  backoffMs: number;
};

/** How much of its jobs' return values a run created with collectResults keeps (bytes of JSON). */
export type ResultBounds = { maxJobBytes: number; maxRunBytes: number };
