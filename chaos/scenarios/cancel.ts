import { readLedger } from '../audit.js';
import { Session, sleep, until, type Check, type Row, type ScenarioContext } from '../session.js';
import { finishRun, size } from './common.js';

/**
 * Rows 22–24: a run of long jobs cancelled mid-flight while something fails: a consumer holding jobs
 * is SIGKILLed at the cancel, Redis (AOF always) is SIGKILLed and restarted around the cancel, or the
 * queue is spread over a 3-master cluster (SHARDS=3). Nothing lost, nothing counted twice, the run
 * joins once with every acknowledged job completed, failed or cancelled, and every process that was
 * not killed exits 0 long before the jobs would have ended.
 */
export function cancelRun(fault: 'consumer-kill' | 'redis-restart' | 'cluster') {
  const name = {
    'consumer-kill': '22 cancel a run while a consumer is SIGKILLed',
    'redis-restart': '23 cancel a run while Redis restarts (AOF always)',
    cluster: '24 cancel a run on a 3-master cluster, SHARDS=3',
  }[fault];
  return async (ctx: ScenarioContext): Promise<Row> => {
    const s = await Session.open(
      ctx,
      name,
      fault === 'cluster'
        ? { cluster: { masters: 3, replicas: 0, shards: 3 } }
        : fault === 'redis-restart'
          ? { persistence: 'aof-always' }
          : {},
    );
    try {
      const producers = fault === 'cluster' ? 3 : 2;
      const perProducer = size(ctx, 100, 2_000);
      const jobMs = 3_000;
      const consumers = 2;
      const concurrency = 4;
      const env = {
        PRODUCERS: producers,
        JOBS: perProducer,
        BATCH_SIZE: 5,
        // Production outlasts the set-up before the cancel (20 batches: 6 s) even on a loaded
        // machine, so every producer is still putting when the cancel arrives.
        PRODUCE_INTERVAL_MS: 300,
        CONCURRENCY: concurrency,
        JOB_PAYLOAD: JSON.stringify({ ms: jobMs }),
        CANCEL_GRACE_MS: 1_000,
      };
      for (let i = 0; i < consumers; i++) s.consumer(env);
      for (let i = 0; i < producers; i++) s.producer(env);
      // Mid-flight: every slot busy, producers still putting.
      const started = await until(
        async () =>
          readLedger(s.ledgerFile).size >= consumers * concurrency &&
          (await s.run.unfinished()) > consumers * concurrency,
        60_000,
      );
      if (fault === 'consumer-kill') {
        const victim = s.procs.live('consumer')[0]!;
        victim.signal('SIGKILL');
        s.faults++;
        ctx.log(`  killed ${victim.label} while it held jobs`);
        // Its jobs stall and come back when their lock runs out: a replacement refuses them.
        s.consumer(env);
      }
      let cancelled: ReturnType<typeof s.run.cancel>;
      const cancelAt = Date.now();
      if (fault === 'redis-restart') {
        await s.redis.crash();
        s.faults++;
        // The cancel is asked while Redis is down: it goes through once Redis is back.
        cancelled = s.run.cancel();
        await sleep(1_000);
        await s.redis.start();
        ctx.log('  Redis crashed, cancel asked, Redis restarted');
      } else cancelled = s.run.cancel();
      // The cancel itself may join the run (nothing left to wait for): the harness's join, no log line.
      if ((await cancelled).joinedNow) s.harnessJoins++;
      const { joinedAt, checks } = await finishRun(s, { joinTimeoutMs: size(ctx, 60_000, 120_000) });
      const a = await s.audit();
      const t = a.status?.join.totals;
      const work = (perProducer * producers * jobMs) / (consumers * concurrency);
      const took = joinedAt === null ? Infinity : joinedAt - cancelAt;
      const cancelChecks: Check[] = [
        [started, 'the run never got every slot busy before the cancel'],
        [
          t !== undefined &&
            t !== null &&
            t.completed + t.failed + (t.cancelled ?? 0) + t.removed === t.produced,
          `totals do not add up: ${JSON.stringify(t)}`,
        ],
        [(t?.cancelled ?? 0) > 0, 'nothing was counted cancelled'],
        [
          s.producers().every((p) => p.output().includes('"state":"cancelled"')),
          'a producer did not stop with state cancelled',
        ],
        [took < Math.min(work / 4, 30_000), `joined ${Math.round(took)} ms after the cancel`],
      ];
      return s.row(a, {
        jobs: a.acknowledged,
        joinedAt,
        faults:
          fault === 'cluster'
            ? 'cancel'
            : `cancel + ${s.faults} ${fault === 'consumer-kill' ? 'kill' : 'Redis crash'}`,
        checks: [...checks, ...cancelChecks],
        notes: [
          `joined ${(took / 1000).toFixed(1)} s after the cancel (the jobs needed ~${Math.round(work / 1000)} s); totals ${JSON.stringify(t)}`,
        ],
      });
    } finally {
      await s.close();
    }
  };
}
