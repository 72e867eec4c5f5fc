import calculateSlot from 'cluster-key-slot';
import { callbackJobId, queuePrefix, queueShards, shardJobPrefix } from '../../shared/keys.js';
import { readRunStatus } from '../../shared/run/status.js';
import { FAST, Session, sleep, until, type Check, type Row, type ScenarioContext } from '../session.js';
import { masterServing } from './cluster.js';
import { finishRun, size } from './common.js';

/**
 * Rows 25–26: a run with a join callback (`ON_JOIN_TYPE=run-report`) hit by faults right around its
 * join: a consumer SIGKILLed and Redis (AOF always) SIGKILLed and restarted as the last jobs finish,
 * or, on a 3-master cluster with replicas in sync and SHARDS=3, the master holding the run's slot
 * SIGKILLed then. The run joins once, and BullMQ's events stream shows its callback added exactly
 * once (and completed), whichever process delivered it.
 */
export function joinCallback(fault: 'kills-and-restart' | 'cluster-failover') {
  const name = {
    'kills-and-restart': '25 join callback: consumer SIGKILL + Redis restart at the join',
    'cluster-failover': '26 join callback: master SIGKILLed at the join, SHARDS=3',
  }[fault];
  return async (ctx: ScenarioContext): Promise<Row> => {
    const cluster = fault === 'cluster-failover';
    const s = await Session.open(
      ctx,
      name,
      cluster ? { cluster: { masters: 3, replicas: 1, shards: 3 } } : { persistence: 'aof-always' },
    );
    try {
      const perProducer = size(ctx, 150, 3_000);
      const env = {
        PRODUCERS: 2,
        JOBS: perProducer,
        BATCH_SIZE: 10,
        PRODUCE_INTERVAL_MS: 5,
        CONCURRENCY: 4,
        JOB_PAYLOAD: '{"ms":20}',
        ON_JOIN_TYPE: 'run-report',
        ON_JOIN_PAYLOAD: '{"row":"chaos"}',
      };
      for (let i = 0; i < 2; i++) s.consumer(env);
      s.producer(env);
      s.producer(env);
      // The tail: both producers done, a handful of jobs still to finish.
      const tail = await until(
        async () => s.producers().every((p) => p.exited) && (await s.unfinished().catch(() => Infinity)) <= 8,
        120_000,
        20,
      );
      if (cluster) {
        const slot = calculateSlot(queuePrefix(s.queue));
        const victim = await masterServing(s, slot);
        s.cluster?.nodes.find((n) => n.port === victim)?.process.kill('SIGKILL');
        s.faults++;
        ctx.log(`  master :${victim} (the run's slot) SIGKILLed at the join`);
      } else {
        s.procs.live('consumer')[0]?.signal('SIGKILL');
        await s.redis.crash();
        s.faults += 2;
        await sleep(500);
        await s.redis.start();
        s.consumer(env);
        ctx.log('  a consumer SIGKILLed and Redis crashed and restarted at the join');
      }
      const { joinedAt, checks } = await finishRun(s, { joinTimeoutMs: size(ctx, 90_000, 300_000) });
      const callbackId = callbackJobId(await s.idPrefix(), 'on-join');
      const added = await callbackAdds(s, callbackId);
      const status = await readRunStatus(s.client, s.queue, s.runId, Number(FAST.LEASE_MS));
      const cb = status?.callbacks.find((c) => c.name === 'on-join');
      const a = await s.audit({ callbacks: new Set([callbackId]) });
      const callbackChecks: Check[] = [
        [tail, 'the run never reached its tail with both producers done'],
        [added === 1, `the callback was added ${added} times`],
        [cb?.state === 'completed', `the callback ended ${cb?.state ?? 'missing'}`],
        [status?.state === 'done', `the run ended ${status?.state ?? '?'}, not done`],
      ];
      return s.row(a, {
        jobs: a.acknowledged,
        joinedAt,
        faults: cluster ? '1 master SIGKILL' : '1 consumer SIGKILL + 1 Redis crash',
        checks: [...checks, ...callbackChecks],
        notes: [`callback ${callbackId}: added ${added} time(s), ${cb?.state ?? 'missing'}`],
      });
    } finally {
      await s.close();
    }
  };
}

/** How many times BullMQ recorded an `added` event for the callback's id, over every shard's events stream. */
async function callbackAdds(s: Session, jobId: string): Promise<number> {
  let n = 0;
  for (const shard of queueShards(s.queue, s.shards)) {
    const entries = await s.client.xrange(`${shardJobPrefix(shard)}events`, '-', '+');
    for (const [, fields] of entries) {
      const f = new Map<string, string>();
      for (let i = 0; i + 1 < fields.length; i += 2) f.set(fields[i]!, fields[i + 1]!);
      if (f.get('event') === 'added' && f.get('jobId') === jobId) n++;
    }
  }
  return n;
}
