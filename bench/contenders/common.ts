/**
 * What every bench-only contender process shares: its settings from the environment and the line
 * protocol it speaks to the harness on stdout (one JSON object per line).
 */

export type ContenderEnv = {
  redisUrl: string;
  queue: string;
  jobs: number;
  batchSize: number;
  intervalMs: number;
  concurrency: number;
  keepCompleted: number;
  runId: string;
  producerId: string;
  /** Concurrent put callers in the producer (each puts one job at a time); 1 = the batch loop. */
  putCallers: number;
};

/** Reads the settings; any missing or malformed value stops the process (the harness always sets them). */
export function readContenderEnv(env: NodeJS.ProcessEnv): ContenderEnv {
  const need = (key: string): string => {
    const v = env[key];
    if (v === undefined || v === '') throw new Error(`${key} must be set`);
    return v;
  };
  const count = (key: string, fallback: number): number => {
    const raw = env[key];
    if (raw === undefined || raw === '') return fallback;
    const n = Number(raw);
    if (!Number.isInteger(n) || n < 0)
      throw new Error(`${key} must be a whole number (got ${JSON.stringify(raw)})`);
    return n;
  };
  return {
    redisUrl: need('REDIS_URL'),
    queue: need('QUEUE'),
    jobs: count('JOBS', 0),
    batchSize: Math.max(1, count('BATCH_SIZE', 1)),
    intervalMs: count('PRODUCE_INTERVAL_MS', 0),
    concurrency: Math.max(1, count('CONCURRENCY', 1)),
    keepCompleted: count('KEEP_COMPLETED', 1_000),
    runId: env.RUN_ID ?? 'bench',
    producerId: env.PRODUCER_ID ?? `bench-producer-${process.pid}`,
    putCallers: Math.max(1, count('PUT_CALLERS', 1)),
  };
}

/**
 * The job data every contender carries: the same shape and size conveyor stores (run, producer,
 * payload of the sleep job), so no contender wins by moving fewer bytes.
 */
export function jobData(
  env: ContenderEnv,
  i: number,
): { run: string; producer: string; payload: { value: number; ms: number } } {
  return { run: env.runId, producer: env.producerId, payload: { value: i, ms: 0 } };
}

export type ProducerReport = {
  ev: 'added';
  n: number;
  firstAddAt: number;
  lastAddAt: number;
  /** With concurrent callers: each put's call → resolved time, ms. */
  putLatencies?: number[];
};
export type ConsumerReport =
  | { ev: 'ready' }
  | { ev: 'progress'; done: number }
  | { ev: 'exit'; done: number; firstStartAt: number | null; lastDoneAt: number | null; latencies: number[] };

export function report(line: ProducerReport | ConsumerReport): void {
  process.stdout.write(`${JSON.stringify(line)}\n`);
}

/**
 * Runs `add(from, count)` for every batch, paced by `intervalMs` between batches, and reports the add
 * window. With `putCallers` > 1, that many callers each put one job at a time, concurrently (a server
 * enqueueing one job per request), and each put's latency is reported too.
 */
export async function produceAll(
  env: ContenderEnv,
  add: (from: number, count: number) => Promise<void>,
): Promise<void> {
  if (env.putCallers > 1) return produceWithCallers(env, (i) => add(i, 1));
  let firstAddAt = 0;
  let sent = 0;
  while (sent < env.jobs) {
    if (env.intervalMs > 0) await new Promise((r) => setTimeout(r, env.intervalMs));
    const n = Math.min(env.batchSize, env.jobs - sent);
    if (sent === 0) firstAddAt = Date.now();
    await add(sent, n);
    sent += n;
  }
  report({ ev: 'added', n: sent, firstAddAt, lastAddAt: Date.now() });
}

/** `putCallers` concurrent callers share the job indexes; each awaits its put before the next. */
export async function produceWithCallers(
  env: ContenderEnv,
  put: (i: number) => Promise<void>,
): Promise<void> {
  const putLatencies: number[] = [];
  let next = 0;
  const firstAddAt = Date.now();
  await Promise.all(
    Array.from({ length: env.putCallers }, async () => {
      while (next < env.jobs) {
        const i = next++;
        const started = performance.now();
        await put(i);
        putLatencies.push(Math.round((performance.now() - started) * 100) / 100);
      }
    }),
  );
  report({ ev: 'added', n: env.jobs, firstAddAt, lastAddAt: Date.now(), putLatencies });
}

/**
 * Counts completions and reports progress every 25 ms, so the harness knows when all jobs are done
 * without polling Redis during the measurement. `stop` runs on SIGTERM/SIGINT, then the final report.
 */
export function makeTally(
  stop: () => Promise<void>,
  measureLatency = process.env.MEASURE_LATENCY === '1',
): {
  started: (addedAt?: number) => void;
  done: () => void;
} {
  let done = 0;
  let reported = 0;
  let firstStartAt: number | null = null;
  let lastDoneAt: number | null = null;
  const latencies: number[] = [];
  const ticker = setInterval(() => {
    if (done !== reported) {
      reported = done;
      report({ ev: 'progress', done });
    }
  }, 25);
  let closing = false;
  const finish = () => {
    if (closing) return;
    closing = true;
    clearInterval(ticker);
    void stop()
      .catch((err: unknown) => process.stderr.write(`close failed: ${String(err)}\n`))
      .finally(() => {
        report({ ev: 'exit', done, firstStartAt, lastDoneAt, latencies });
        process.exit(0);
      });
  };
  process.once('SIGTERM', finish);
  process.once('SIGINT', finish);
  return {
    started: (addedAt) => {
      const now = Date.now();
      firstStartAt ??= now;
      if (measureLatency && addedAt !== undefined) latencies.push(now - addedAt);
    },
    done: () => {
      done++;
      lastDoneAt = Date.now();
    },
  };
}
