import { bullKeyPrefix, putJobId } from '../../shared/keys.js';
import { readLedger } from '../audit.js';
import type { ChaosProcess } from '../processes.js';
import { FAST, Session, sleep, until, type Row, type ScenarioContext } from '../session.js';
import { finishRun, size } from './common.js';

const LOCK = Number(FAST.LOCK_MS);
const STALLED = Number(FAST.STALLED_INTERVAL_MS);

/** Keeps `count` consumers alive, replacing any that dies (as an orchestrator would). */
function supervise(
  s: Session,
  count: number,
  env: Record<string, string | number>,
): { stop: () => void; respawns: () => number } {
  let stopped = false;
  let respawns = 0;
  void (async () => {
    while (!stopped) {
      const live = s.procs.live('consumer').length;
      if (live < count && !(await s.run.isJoined())) {
        for (let i = live; i < count && !stopped; i++) {
          s.consumer(env);
          respawns++;
        }
      }
      await sleep(100);
    }
  })();
  return { stop: () => void (stopped = true), respawns: () => respawns };
}

/** 1. Two producers, several consumers, nothing injected: the control row. */
export const baseline = (ctx: ScenarioContext): Promise<Row> => runBaseline(ctx, '1 baseline');

/** The baseline's run on the Session `open` gives it (one Redis, or a cluster with shards). */
export async function runBaseline(
  ctx: ScenarioContext,
  name: string,
  open: Parameters<typeof Session.open>[2] = {},
): Promise<Row> {
  const s = await Session.open(ctx, name, open);
  try {
    const jobs = size(ctx, 400, 20_000);
    const env = {
      PRODUCERS: 2,
      JOBS: jobs / 2,
      CONCURRENCY: size(ctx, 4, 8),
      JOB_PAYLOAD: '{"ms":2}',
      BATCH_SIZE: 100,
    };
    for (let i = 0; i < size(ctx, 2, 4); i++) s.consumer(env);
    s.producer(env);
    s.producer(env);
    const { joinedAt, checks } = await finishRun(s, { joinTimeoutMs: size(ctx, 90_000, 600_000) });
    const a = await s.audit();
    return s.row(a, {
      jobs,
      joinedAt,
      checks: [...checks, [a.acknowledged === jobs, `acknowledged ${a.acknowledged} of ${jobs}`]],
    });
  } finally {
    await s.close();
  }
}

/** 2. SIGKILL a random ready consumer every 2 s and start a replacement, until the run joins. */
export async function consumerKills(ctx: ScenarioContext): Promise<Row> {
  const s = await Session.open(ctx, '2 SIGKILL a consumer every 2 s');
  try {
    const jobs = size(ctx, 800, 20_000);
    const consumers = size(ctx, 2, 4);
    const concurrency = size(ctx, 4, 8);
    const jobMs = size(ctx, 30, 20);
    const env = {
      PRODUCERS: 2,
      JOBS: jobs / 2,
      CONCURRENCY: concurrency,
      JOB_PAYLOAD: JSON.stringify({ ms: jobMs }),
      BATCH_SIZE: 50,
    };
    for (let i = 0; i < consumers; i++) s.consumer(env);
    s.producer(env);
    s.producer(env);
    const maxKills = size(ctx, 3, 1_000);
    let lastKillAt = 0;
    let openAtLastKill = 0;
    const sup = supervise(s, consumers, env);
    while (s.faults < maxKills) {
      await sleep(2_000);
      if ((await s.waitForJoin(0)) !== null) break;
      const ready = s.procs.live('consumer').filter((p) => p.output().includes('consumer ready'));
      const victim = ready[Math.floor(Math.random() * ready.length)];
      if (!victim) continue;
      victim.signal('SIGKILL');
      await victim.exit;
      s.faults++;
      lastKillAt = Date.now();
      openAtLastKill = await s.unfinished();
      ctx.log(`  killed ${victim.label} (pid ${victim.pid}); ${openAtLastKill} unfinished`);
    }
    const { joinedAt, checks } = await finishRun(s, { joinTimeoutMs: size(ctx, 120_000, 900_000) });
    sup.stop();
    const a = await s.audit();
    // After the last kill: its jobs wait out the lock and up to two stalled checks, the rest drains
    // at full speed, and a replacement needs a few seconds to start (tsx on a loaded machine).
    const drainMs = (openAtLastKill * jobMs) / (consumers * concurrency);
    const boundMs = 2 * (LOCK + STALLED) + drainMs + 2_000 + 5_000;
    const afterKill = joinedAt === null ? Infinity : joinedAt - lastKillAt;
    return s.row(a, {
      jobs,
      joinedAt,
      faults: `${s.faults} kills`,
      checks: [
        ...checks,
        [
          a.duplicateStarts <= s.faults * concurrency,
          `duplicate starts ${a.duplicateStarts} > kills × concurrency (${s.faults * concurrency})`,
        ],
        [
          afterKill <= boundMs,
          `joined ${Math.round(afterKill)} ms after the last kill; bound ${Math.round(boundMs)} ms`,
        ],
      ],
      notes: [
        `joined ${(afterKill / 1000).toFixed(1)} s after the last kill (bound ${(boundMs / 1000).toFixed(1)} s); ${sup.respawns()} replacements`,
      ],
    });
  } finally {
    await s.close();
  }
}

/** 3. A job that SIGKILLs its consumer on every attempt: it must end failed after MAX_STALLED stalls. */
export async function poisonJob(ctx: ScenarioContext): Promise<Row> {
  const s = await Session.open(ctx, '3 poison job kills its consumer');
  try {
    const normal = size(ctx, 200, 2_000);
    const maxStalled = 1;
    // One job per consumer: a job that kills its process also stalls every job running beside it, and
    // a neighbour caught beside it twice would exceed MAX_STALLED too (docs/chaos.md).
    const env = { PRODUCERS: 2, CONCURRENCY: 1, MAX_STALLED: maxStalled, JOB_PAYLOAD: '{"ms":20}' };
    const sup = supervise(s, 2, env);
    await until(() => s.procs.live('consumer').length === 2, 5_000);
    s.producer({ ...env, JOBS: normal });
    s.producer({ ...env, JOBS: 1, JOB_PAYLOAD: '{"ms":0,"crash":true}' }, 'poison');
    const { joinedAt, checks } = await finishRun(s, { joinTimeoutMs: size(ctx, 90_000, 300_000) });
    sup.stop();
    const a = await s.audit();
    const poisonId = putJobId(await s.idPrefix(), 'poison', 0);
    const q = bullKeyPrefix(s.queue);
    const reason = await s.client.hget(`${q}${poisonId}`, 'failedReason');
    const selfKills = s.procs.all.filter(
      (p) => p.role === 'consumer' && p.exited?.signal === 'SIGKILL',
    ).length;
    const j = a.status?.jobs;
    return s.row(a, {
      jobs: normal + 1,
      joinedAt,
      faults: `1 poison job (${selfKills} consumers killed)`,
      checks: [
        ...checks,
        [
          a.failed.length === 1 && a.failed[0] === poisonId,
          `failed set is [${a.failed.join(', ')}], expected only the poison job`,
        ],
        [/stalled/i.test(reason ?? ''), `poison job's failedReason is "${reason}"`],
        [
          selfKills === maxStalled + 1,
          `the poison job killed ${selfKills} consumers; expected MAX_STALLED + 1 = ${maxStalled + 1}`,
        ],
        [a.completed === normal, `completed ${a.completed} of ${normal} normal jobs`],
        [j?.failed === 1, `run counted ${j?.failed} failed`],
      ],
      notes: [
        `run counted the poison job through ${j && j.reconciled > 0 ? `reconcile (reconciled ${j.reconciled})` : 'a consumer report'}; failedReason "${reason}"`,
      ],
    });
  } finally {
    await s.close();
  }
}

/** 4. SIGTERM every consumer while each holds jobs: they finish what they hold and exit 0 within the grace. */
export async function sigtermUnderLoad(ctx: ScenarioContext): Promise<Row> {
  const s = await Session.open(ctx, '4 SIGTERM every consumer under load');
  try {
    const jobs = size(ctx, 160, 2_000);
    const consumers = size(ctx, 2, 4);
    const concurrency = size(ctx, 4, 8);
    const grace = Number(s.env().SHUTDOWN_GRACE_MS);
    const env = {
      PRODUCERS: 1,
      JOBS: jobs,
      CONCURRENCY: concurrency,
      JOB_PAYLOAD: '{"ms":400}',
      BATCH_SIZE: 50,
    };
    const first: ChaosProcess[] = [];
    for (let i = 0; i < consumers; i++) first.push(s.consumer(env));
    s.producer(env);
    await until(() => [...readLedger(s.ledgerFile).values()].length >= consumers * concurrency * 2, 60_000);
    const sentAt = Date.now();
    for (const c of first) c.signal('SIGTERM');
    s.faults = first.length;
    const exits = await Promise.all(first.map((c) => c.exit));
    const slowest = Math.max(...exits.map((e) => e.at - sentAt));
    for (let i = 0; i < consumers; i++) s.consumer(env);
    const { joinedAt, checks } = await finishRun(s, { joinTimeoutMs: size(ctx, 90_000, 300_000) });
    const a = await s.audit();
    const stalledLogs = s.procs
      .outputs()
      .split('\n')
      .filter((l) => /stalled/i.test(l)).length;
    return s.row(a, {
      jobs,
      joinedAt,
      faults: `${s.faults} SIGTERMs`,
      checks: [
        ...checks,
        [exits.every((e) => e.code === 0), `exit codes ${exits.map((e) => e.code ?? e.signal).join(', ')}`],
        [slowest <= grace, `slowest exit ${slowest} ms > grace ${grace} ms`],
        [a.duplicateStarts === 0, `duplicate starts ${a.duplicateStarts}`],
        [
          a.failed.length === 0 && stalledLogs === 0,
          `stalled: ${a.failed.length} failed, ${stalledLogs} log lines mention stalls`,
        ],
      ],
      notes: [
        `slowest consumer exited ${(slowest / 1000).toFixed(1)} s after SIGTERM (grace ${grace / 1000} s)`,
      ],
    });
  } finally {
    await s.close();
  }
}

/** 5. One job that runs 5 × the lock duration, two idle consumers watching: lock renewal must hold it. */
export async function longJob(ctx: ScenarioContext): Promise<Row> {
  const s = await Session.open(ctx, '5 job runs 5 × the lock');
  try {
    const lockMs = size(ctx, 1_000, 2_000);
    const env = {
      PRODUCERS: 1,
      JOBS: 1,
      LOCK_MS: lockMs,
      STALLED_INTERVAL_MS: 500,
      CONCURRENCY: 1,
      JOB_PAYLOAD: JSON.stringify({ ms: 5 * lockMs }),
    };
    s.consumer(env);
    s.consumer(env);
    s.producer(env);
    const { joinedAt, checks } = await finishRun(s, { joinTimeoutMs: 60_000 });
    const a = await s.audit();
    const starts = [...readLedger(s.ledgerFile).values()].reduce((n, e) => n + e.starts, 0);
    return s.row(a, {
      jobs: 1,
      joinedAt,
      faults: 'none (time)',
      checks: [...checks, [starts === 1, `the job started ${starts} times`]],
      notes: [`lock ${lockMs} ms, job ${5 * lockMs} ms, ${starts} execution(s)`],
    });
  } finally {
    await s.close();
  }
}

/** 6. `CLIENT KILL TYPE normal` every 2 s while jobs flow: every connection of every process drops. */
export async function clientKills(ctx: ScenarioContext): Promise<Row> {
  const s = await Session.open(ctx, '6 CLIENT KILL every 2 s');
  try {
    const windowMs = size(ctx, 10_000, 60_000);
    // Production paced to span the window: 5 jobs per 100 ms per producer.
    const perProducer = (windowMs / 100) * 5;
    const jobs = perProducer * 2;
    const env = {
      PRODUCERS: 2,
      JOBS: perProducer,
      BATCH_SIZE: 5,
      PRODUCE_INTERVAL_MS: 100,
      CONCURRENCY: size(ctx, 4, 8),
      JOB_PAYLOAD: '{"ms":5}',
    };
    for (let i = 0; i < size(ctx, 2, 4); i++) s.consumer(env);
    s.producer(env);
    s.producer(env);
    // The window starts once every process is connected, so each kill hits all of them.
    await Promise.all(
      s.procs.all.map((p) => p.waitFor(p.role === 'consumer' ? 'consumer ready' : 'producer registered')),
    );
    let killed = 0;
    const end = Date.now() + windowMs;
    while (Date.now() < end) {
      await sleep(2_000);
      // The harness's own connection is spared (SKIPME defaults to yes).
      killed += Number(await s.client.call('CLIENT', 'KILL', 'TYPE', 'normal'));
      s.faults++;
    }
    const { joinedAt, checks } = await finishRun(s, { joinTimeoutMs: size(ctx, 60_000, 300_000) });
    const a = await s.audit();
    return s.row(a, {
      jobs,
      joinedAt,
      faults: `${s.faults} × CLIENT KILL (${killed} conns)`,
      checks,
    });
  } finally {
    await s.close();
  }
}

/** 7. Redis SIGKILLed mid-run and restarted on the same port and data folder. */
export function redisCrash(persistence: 'aof-always' | 'aof-everysec' | 'none') {
  const label = { 'aof-always': 'AOF always', 'aof-everysec': 'AOF everysec', none: 'no persistence' }[
    persistence
  ];
  return async (ctx: ScenarioContext): Promise<Row> => {
    const s = await Session.open(ctx, `7 Redis SIGKILL + restart, ${label}`, { persistence });
    try {
      const perProducer = size(ctx, 400, 5_000);
      const jobs = perProducer * 2;
      const env = {
        PRODUCERS: 2,
        JOBS: perProducer,
        BATCH_SIZE: 10,
        PRODUCE_INTERVAL_MS: size(ctx, 50, 20),
        CONCURRENCY: 4,
        JOB_PAYLOAD: '{"ms":5}',
      };
      for (let i = 0; i < 2; i++) s.consumer(env);
      s.producer(env);
      s.producer(env);
      await until(
        async () =>
          // One Redis, one shard: the run's meta holds the shard's counters.
          Number(await s.client.hget(s.run.keys.meta, 'produced')) >= jobs / 3,
        60_000,
      );
      await s.redis.crash();
      s.faults++;
      await sleep(1_000);
      await s.redis.start();
      ctx.log(`  Redis crashed and restarted (${label})`);
      const expectJoin = persistence !== 'none';
      let stillRunning: string[] = [];
      if (!expectJoin) {
        // The run's state died with Redis: wait for the producers, give consumers a while, then stop them.
        await Promise.all(s.producers().map((p) => p.exit));
        await s.waitForJoin(size(ctx, 10_000, 30_000));
        stillRunning = s.procs.live('consumer').map((p) => p.label);
        for (const c of s.procs.live('consumer')) c.signal('SIGTERM');
      }
      const { joinedAt, checks } = await finishRun(s, {
        joinTimeoutMs: expectJoin ? size(ctx, 60_000, 300_000) : 0,
        expectExit: expectJoin ? undefined : () => true,
      });
      const a = await s.audit();
      const notes = [
        a.status
          ? `acknowledged by producers but forgotten by the run: ${a.forgottenByRun}`
          : "the run's state is gone (status: no such run)",
      ];
      if (!expectJoin) {
        const reasons = s.producers().map((p) => {
          const errors = p
            .output()
            .split('\n')
            .filter((l) => l.includes('"level":50'));
          return /"msg":"([^"]*)"/.exec(errors[errors.length - 1] ?? '')?.[1] ?? '?';
        });
        notes.push(
          `consumers still waiting ${size(ctx, 10, 30)} s later (stopped by SIGTERM): ${stillRunning.join(', ') || 'none'}; producers said "${[...new Set(reasons)].join('" / "')}"`,
        );
      }
      if (persistence === 'aof-always') {
        return s.row(a, { jobs, joinedAt, faults: '1 Redis SIGKILL', checks, notes });
      }
      const producerExits = s.producers().map((p) => `${p.label}=${p.exited?.code ?? p.exited?.signal}`);
      const joinedWithLoss = joinedAt !== null && a.lost.length > 0;
      if (persistence === 'aof-everysec') {
        notes.push(
          'a SIGKILL of Redis loses nothing with everysec: each write reaches the kernel before the reply, only the fsync waits; losing that second needs an OS crash or power cut, which this harness cannot cause',
        );
      }
      const row = s.row(a, {
        jobs,
        joinedAt,
        faults: '1 Redis SIGKILL',
        expectJoin: false,
        notes: [
          ...notes,
          `producer exits ${producerExits.join(', ')}`,
          joinedWithLoss
            ? 'the run JOINED although acknowledged jobs were lost (silent)'
            : 'no join with lost jobs',
        ],
      });
      // everysec: losing up to a second of writes is the documented trade-off; the row reports it.
      // none: the run's state is gone with the data; what matters is that it does not join as if complete.
      row.pass =
        persistence === 'aof-everysec' ||
        (!joinedWithLoss && s.producers().every((p) => p.exited?.code !== 0));
      row.verdict = persistence === 'aof-everysec' ? 'report' : undefined;
      return row;
    } finally {
      await s.close();
    }
  };
}

/** 8. Redis SIGSTOPped for less than the lock, then for twice the lock. */
export async function redisPause(ctx: ScenarioContext): Promise<Row> {
  const s = await Session.open(ctx, '8 Redis SIGSTOP short, then long');
  try {
    const lockMs = 4_000;
    const jobs = size(ctx, 400, 4_000);
    const env = {
      PRODUCERS: 1,
      JOBS: jobs,
      BATCH_SIZE: 20,
      PRODUCE_INTERVAL_MS: 20,
      LOCK_MS: lockMs,
      CONCURRENCY: 4,
      JOB_PAYLOAD: '{"ms":150}',
    };
    s.consumer(env);
    s.consumer(env);
    s.producer(env);
    const active = () => s.client.llen(`${bullKeyPrefix(s.queue)}active`);
    await until(async () => (await active()) >= 4, 60_000);
    const shortMs = lockMs / 4;
    s.redis.pause();
    await sleep(shortMs);
    s.redis.resume();
    s.faults++;
    await sleep(lockMs + 2 * Number(FAST.STALLED_INTERVAL_MS));
    const dupAfterShort = [...readLedger(s.ledgerFile).values()].reduce(
      (n, e) => n + Math.max(0, e.starts - 1),
      0,
    );
    const activeAtLongPause = await active();
    const longMs = 2 * lockMs;
    s.redis.pause();
    await sleep(longMs);
    s.redis.resume();
    s.faults++;
    const { joinedAt, checks } = await finishRun(s, { joinTimeoutMs: size(ctx, 90_000, 300_000) });
    const a = await s.audit();
    return s.row(a, {
      jobs,
      joinedAt,
      faults: `SIGSTOP ${shortMs / 1000} s + ${longMs / 1000} s`,
      checks: [
        ...checks,
        [dupAfterShort === 0, `${dupAfterShort} duplicate starts after the short pause`],
        [
          a.duplicateStarts <= activeAtLongPause,
          `duplicate starts ${a.duplicateStarts} > jobs active at the long pause (${activeAtLongPause})`,
        ],
      ],
      notes: [
        `lock ${lockMs / 1000} s; short pause: ${dupAfterShort} duplicates; long pause: ${a.duplicateStarts - dupAfterShort} duplicates of ${activeAtLongPause} active`,
      ],
    });
  } finally {
    await s.close();
  }
}

/** 9. Redis down when every process starts; it comes up `downMs` later. */
export async function redisLate(ctx: ScenarioContext): Promise<Row> {
  const s = await Session.open(ctx, '9 Redis down at start-up', { startRedis: false });
  try {
    const downMs = size(ctx, 5_000, 10_000);
    const jobs = size(ctx, 200, 2_000);
    const env = { PRODUCERS: 2, JOBS: jobs / 2, CONCURRENCY: 4 };
    const procs = [s.consumer(env), s.consumer(env), s.producer(env), s.producer(env)];
    const waited = await Promise.all(
      procs.map((p) =>
        p.waitFor('waiting for Redis', downMs + 30_000).then(
          () => true,
          () => false,
        ),
      ),
    );
    const elapsed = Date.now() - s.t0;
    if (elapsed < downMs) await sleep(downMs - elapsed);
    await s.redis.start();
    await s.client.connect();
    s.faults++;
    const { joinedAt, checks } = await finishRun(s, { joinTimeoutMs: 60_000 });
    const a = await s.audit();
    return s.row(a, {
      jobs,
      joinedAt,
      faults: `Redis down ${Math.round(Math.max(downMs, elapsed) / 1000)} s`,
      checks: [
        ...checks,
        [
          waited.every(Boolean),
          `did not say they were waiting: ${procs
            .filter((_, i) => !waited[i])
            .map((p) => p.label)
            .join(', ')}`,
        ],
        [s.procs.all.length === procs.length, 'a process had to be restarted'],
      ],
    });
  } finally {
    await s.close();
  }
}

/** 10. One of two producers SIGKILLed mid-run: its lease expires, it shows lost, its jobs still run. */
export const producerKill = (ctx: ScenarioContext): Promise<Row> =>
  runProducerKill(ctx, '10 producer SIGKILLed mid-run');

/** Row 10's run on the Session `open` gives it (one Redis, or a cluster with shards). */
export async function runProducerKill(
  ctx: ScenarioContext,
  name: string,
  open: Parameters<typeof Session.open>[2] = {},
): Promise<Row> {
  const s = await Session.open(ctx, name, open);
  try {
    const perProducer = size(ctx, 300, 5_000);
    const env = {
      PRODUCERS: 2,
      JOBS: perProducer,
      BATCH_SIZE: 10,
      PRODUCE_INTERVAL_MS: 50,
      CONCURRENCY: 4,
      JOB_PAYLOAD: '{"ms":5}',
    };
    s.consumer(env);
    s.consumer(env);
    const victim = s.producer(env);
    s.producer(env);
    await until(() => victim.output().split('"msg":"put"').length > perProducer / 30, 60_000);
    victim.signal('SIGKILL');
    await victim.exit;
    s.faults++;
    const { joinedAt, checks } = await finishRun(s, { joinTimeoutMs: size(ctx, 60_000, 300_000) });
    const a = await s.audit();
    const rec = a.status?.producers.list.find((p) => p.id === victim.label);
    return s.row(a, {
      jobs: a.acknowledged,
      joinedAt,
      faults: '1 producer SIGKILL',
      checks: [
        ...checks,
        [rec?.state === 'lost', `the killed producer shows "${rec?.state}"`],
        [
          a.status?.producers.lost === 1 && a.status.producers.done === 1,
          'expected 1 lost + 1 done producer',
        ],
      ],
      notes: [`killed producer had ${rec?.produced} jobs acknowledged of ${perProducer} planned`],
    });
  } finally {
    await s.close();
  }
}
