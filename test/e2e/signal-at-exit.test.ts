import { describe, expect, it } from 'vitest';
import { SIGNAL_ECHO_MS } from '../../shared/shutdown.js';
import { FAST } from '../helpers/demo.js';
import { exitOf, spawnRole, type Spawned } from '../helpers/processes.js';
import { redisUrl } from '../helpers/redis.js';
import { useTestQueue } from '../helpers/test-queue.js';

/**
 * SIGTERM every millisecond until the process exits, for less than the echo window so every repeat
 * counts as the same signal: one of them lands while the process tears itself down after its
 * graceful stop, which is when a supervisor's SIGTERM (compose, the demo, Kubernetes) can arrive.
 */
async function sigtermUntilExit(p: Spawned) {
  const started = Date.now();
  const timer = setInterval(() => {
    if (Date.now() - started < SIGNAL_ECHO_MS - 100) p.child.kill('SIGTERM');
  }, 1);
  try {
    return await exitOf(p, 30_000);
  } finally {
    clearInterval(timer);
  }
}

describe('a SIGTERM while a process is ending', () => {
  const ctx = useTestQueue();

  it('producer and consumer that finished their run still exit 0, never killed by the signal', async () => {
    // Both linger serving final metrics after the run, as they do under compose; the SIGTERM ends that.
    const env = {
      ...FAST,
      REDIS_URL: redisUrl(),
      QUEUE: ctx.queue,
      RUN_ID: 'ending',
      JOBS: '3',
      JOB_MS: '10',
      PRODUCE_INTERVAL_MS: '0',
      METRICS_LINGER_MS: '60000',
    };
    const producer = spawnRole('producer', env);
    const consumer = spawnRole('consumer', env);
    for (const p of [producer, consumer]) await p.waitFor('serving final metrics before exiting');
    const [p, c] = await Promise.all([sigtermUntilExit(producer), sigtermUntilExit(consumer)]);
    expect(p, producer.output()).toEqual({ code: 0, signal: null });
    expect(c, consumer.output()).toEqual({ code: 0, signal: null });
  }, 60_000);
});
