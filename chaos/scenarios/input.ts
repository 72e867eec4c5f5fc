import type { Redis } from 'ioredis';
import { PayloadError, createProducer, type Producer } from '../../producers/producer.js';
import { builtinJobs, JobRegistry } from '../../shared/jobs/index.js';
import { bullKeyPrefix } from '../../shared/keys.js';
import { jobOptions, openQueue } from '../../shared/queue.js';
import { assertNoEviction, EvictionPolicyError } from '../../shared/redis-policy.js';
import { RunStore } from '../../shared/run/run-store.js';
import { ChaosRedis } from '../chaos-redis.js';
import { ledgerJob } from '../ledger-jobs.js';
import { producerAcknowledged } from '../audit.js';
import { FAST, Session, sleep, until, type Row, type ScenarioContext } from '../session.js';
import { finishRun, size } from './common.js';

const registry = () => new JobRegistry([...builtinJobs, ledgerJob]);
const retry = { attempts: 3, backoffMs: 100, keepCompleted: 1_000_000, keepFailed: 1_000_000 };

async function jobKeys(redis: Redis, queue: string, runId: string): Promise<string[]> {
  const keys: string[] = [];
  let cursor = '0';
  do {
    const [next, batch] = await redis.scan(
      cursor,
      'MATCH',
      `${bullKeyPrefix(queue)}${runId}+*`,
      'COUNT',
      1000,
    );
    cursor = next;
    keys.push(...batch);
  } while (cursor !== '0');
  return keys;
}

/** 11. Redis at maxmemory under noeviction: adds fail loudly, accepted jobs stay; an evicting Redis is refused. */
export async function maxMemory(ctx: ScenarioContext): Promise<Row> {
  const s = await Session.open(ctx, '11 maxmemory, noeviction', {
    redisArgs: ['--maxmemory-policy', 'noeviction'],
  });
  try {
    const used = Number(/used_memory:(\d+)/.exec(await s.client.info('memory'))?.[1] ?? 0);
    const budget = size(ctx, 4, 32) * 1024 * 1024;
    await s.client.config('SET', 'maxmemory', String(used + budget));
    const env = {
      PRODUCERS: 1,
      JOBS: 1_000_000,
      BATCH_SIZE: 20,
      JOB_PAYLOAD: JSON.stringify({ ms: 1, pad: 'x'.repeat(2_000) }),
    };
    const producer = s.producer(env);
    const exit = await producer.exit;
    s.faults++;
    const acked = producerAcknowledged(await s.idPrefix(), [producer]);
    const q = bullKeyPrefix(s.queue);
    const exists = await Promise.all([...acked].map((id) => s.client.exists(`${q}${id}`)));
    const vanished = exists.filter((e) => e === 0).length;
    const message =
      producer
        .output()
        .split('\n')
        .find((l) => /OOM|maxmemory/.test(l)) ?? '';
    // The operator's fix: more memory. Then consumers drain what was accepted and the run joins once
    // the failed producer's lease runs out.
    await s.client.config('SET', 'maxmemory', '0');
    s.consumer({ ...env, CONCURRENCY: 8 });
    s.consumer({ ...env, CONCURRENCY: 8 });
    const { joinedAt, checks } = await finishRun(s, {
      joinTimeoutMs: size(ctx, 60_000, 300_000),
      expectExit: (p) => p.role !== 'producer' || p.exited?.code === 1,
    });
    const a = await s.audit();

    const lru = await ChaosRedis.create(ctx.redisBinary, { args: ['--maxmemory-policy', 'allkeys-lru'] });
    let refusal = '';
    const probe = new (await import('ioredis')).Redis(lru.url, { lazyConnect: true });
    try {
      await probe.connect();
      await assertNoEviction(probe);
    } catch (err) {
      if (err instanceof EvictionPolicyError) refusal = err.message;
      else throw err;
    } finally {
      probe.disconnect();
      await lru.stop();
    }
    return s.row(a, {
      jobs: acked.size,
      joinedAt,
      faults: `maxmemory +${budget >> 20} MB`,
      checks: [
        ...checks,
        [exit.code === 1, `producer exit ${exit.code ?? exit.signal}, expected 1`],
        [message.includes('OOM command not allowed'), 'the producer did not log the OOM rejection'],
        [vanished === 0, `${vanished} acknowledged jobs vanished from Redis`],
        [acked.size > 0, 'nothing was accepted before memory ran out'],
        [refusal.includes('allkeys-lru'), 'an allkeys-lru Redis was not refused'],
      ],
      notes: [
        `${acked.size} jobs accepted before OOM, 0 vanished; evicting Redis refused by assertNoEviction`,
      ],
    });
  } finally {
    await s.close();
  }
}

/** The malformed payloads: wrong types, prototype keys, deep nesting, values JSON cannot carry, oversized. */
function malformed(n: number): { type: string; payload: unknown; key?: string }[] {
  let deep: unknown = 1;
  for (let i = 0; i < 40; i++) deep = { d: deep };
  const circular: Record<string, unknown> = { ms: 1 };
  circular.self = circular;
  const kinds: (() => { type: string; payload: unknown; key?: string })[] = [
    () => ({ type: 'ledger', payload: { ms: 'fast' } }),
    () => ({ type: 'ledger', payload: { ms: -1 } }),
    () => ({ type: 'ledger', payload: { ms: 1.5 } }),
    () => ({ type: 'ledger', payload: { ms: null } }),
    () => ({ type: 'ledger', payload: { ms: [1] } }),
    () => ({ type: 'ledger', payload: {} }),
    () => ({ type: 'ledger', payload: [] }),
    () => ({ type: 'ledger', payload: 'not json {' }),
    () => ({ type: 'ledger', payload: 42 }),
    () => ({ type: 'ledger', payload: null }),
    () => ({ type: 'ledger', payload: { ms: 1, extra: true } }),
    () => ({ type: 'sleep', payload: { value: 'x', ms: 1 } }),
    () => ({ type: 'ledger', payload: JSON.parse('{"ms":1,"__proto__":{"polluted":true}}') as unknown }),
    () => ({ type: 'ledger', payload: { ms: 1, constructor: { prototype: {} } } }),
    () => ({ type: 'ledger', payload: JSON.parse('{"ms":1,"a":{"b":{"__proto__":{"x":1}}}}') as unknown }),
    () => ({ type: 'ledger', payload: { ms: 1, deep } }),
    () => ({ type: 'ledger', payload: circular }),
    () => ({ type: 'ledger', payload: { ms: NaN } }),
    () => ({ type: 'ledger', payload: { ms: Infinity } }),
    () => ({ type: 'ledger', payload: { ms: 1n } }),
    () => ({ type: 'ledger', payload: { ms: () => 1 } }),
    () => ({ type: 'ledger', payload: { ms: Symbol('s') } }),
    () => ({ type: 'ledger', payload: { ms: new Date() } }),
    () => ({ type: 'ledger', payload: { ms: undefined } }),
    () => ({ type: 'ledger', payload: new Map([['ms', 1]]) }),
    () => ({ type: 'ledger', payload: { ms: 1, pad: 'x'.repeat(70_000) } }),
    () => ({ type: 'ledger', payload: { ms: 1, big: 'y'.repeat(200_000) } }),
    () => ({ type: 'nope', payload: { ms: 1 } }),
    () => ({ type: 'ledger', payload: { ms: 1 }, key: 'has space' }),
    () => ({ type: 'ledger', payload: { ms: 1 }, key: 'a:b' }),
  ];
  return Array.from({ length: n }, (_, i) => kinds[i % kinds.length]!());
}

/**
 * Puts 1,000 malformed payloads, one by one and one hidden in a batch, through a library producer;
 * each must be refused with a reason before it reaches Redis.
 */
async function putMalformed(s: Session) {
  const run = new RunStore(s.client, s.queue, s.runId);
  await run.create(2, Number(FAST.LEASE_MS));
  await run.registerProducer('bad', { host: 'chaos', pid: process.pid }, 60_000);
  const producer = createProducer({
    run,
    registry: registry(),
    producerId: 'bad',
    jobOptions: jobOptions(retry),
  });
  const items = malformed(1_000);
  let rejected = 0;
  const noReason: number[] = [];
  for (const [i, item] of items.entries()) {
    try {
      await producer.put(item.type, item.payload, { key: item.key });
    } catch (err) {
      if (err instanceof PayloadError && err.reason.length > 0) rejected++;
      else noReason.push(i);
    }
  }
  // One bad item in a batch of good ones: the whole batch is refused.
  let batchRefused = false;
  try {
    await producer.putMany([
      { type: 'ledger', payload: { ms: 1 } },
      items[0]!,
      { type: 'ledger', payload: { ms: 1 } },
    ]);
  } catch (err) {
    batchRefused = err instanceof PayloadError && err.index === 1;
  }
  // SCAN sees one server's keys: this scenario runs on a single Redis.
  const enqueued = (await jobKeys(s.client as Redis, s.queue, s.runId)).length;
  if ((await producer.done()).join.joinedNow) s.harnessJoins++;
  return { items: items.length, rejected, noReason, batchRefused, enqueued };
}

/** Malformed jobs written straight into Redis, around the producer: bad payload, no envelope, unknown type. */
async function injectMalformed(s: Session, queue: ReturnType<typeof openQueue>): Promise<string[]> {
  const injected = [`${s.runId}.intruder.0`, `${s.runId}.intruder.1`, `${s.runId}.intruder.2`];
  const opts = {
    attempts: 3,
    backoff: { type: 'fixed', delay: 100 },
    removeOnComplete: false,
    removeOnFail: false,
  };
  await queue.add(
    'ledger',
    { run: s.runId, producer: 'intruder', payload: { ms: 'x' } },
    { ...opts, jobId: injected[0] },
  );
  await queue.add('ledger', 'garbage' as never, { ...opts, jobId: injected[1] });
  await queue.add(
    'nope',
    { run: s.runId, producer: 'intruder', payload: {} },
    { ...opts, jobId: injected[2] },
  );
  return injected;
}

/** 12. 1,000 malformed payloads refused before Redis; malformed jobs written into Redis fail once, visibly. */
export async function badInput(ctx: ScenarioContext): Promise<Row> {
  const s = await Session.open(ctx, '12 malformed input');
  const queue = openQueue(s.queue, s.client);
  try {
    const { items, rejected, noReason, batchRefused, enqueued } = await putMalformed(s);
    const injected = await injectMalformed(s, queue);
    s.faults = 1_000 + injected.length;

    const env = { PRODUCERS: 2, JOBS: 20 };
    s.consumer(env);
    s.producer(env);
    // A producer process handed a payload that is not JSON exits 2 naming the variable.
    const nonJson = s.procs.spawnRole(
      'producer',
      'p-nonjson',
      s.env({ ...env, PRODUCER_ID: 'nonjson', JOB_PAYLOAD: '{"ms": 1,' }),
    );
    const { joinedAt, checks } = await finishRun(s, {
      joinTimeoutMs: 60_000,
      expectExit: (p) => p !== nonJson || p.exited?.code === 2,
    });
    const a = await s.audit({ injected: new Set(injected) });
    const q = bullKeyPrefix(s.queue);
    const attempts = await Promise.all(
      injected.map((id) => s.client.hmget(`${q}${id}`, 'atm', 'failedReason')),
    );
    const onceEach = attempts.every(([atm]) => atm === '1');
    return s.row(a, {
      jobs: 20,
      joinedAt,
      faults: `${items} bad payloads + ${injected.length} bad jobs`,
      checks: [
        ...checks,
        [
          rejected === items,
          `${rejected}/${items} rejected with a reason (no reason: items ${noReason.slice(0, 5).join(', ')})`,
        ],
        [enqueued === 0, `${enqueued} malformed jobs reached Redis`],
        [batchRefused, 'a batch with one bad item was not refused as a whole, naming the item'],
        [
          injected.every((id) => a.failed.includes(id)),
          `injected jobs in the failed set: ${injected.filter((id) => a.failed.includes(id)).length}/3`,
        ],
        [
          onceEach,
          `injected jobs' attempts: ${attempts.map(([atm]) => atm).join(', ')} (expected 1 each: unrecoverable)`,
        ],
        [
          nonJson.output().includes('JOB_PAYLOAD: must be JSON'),
          'a non-JSON JOB_PAYLOAD was not refused by name',
        ],
      ],
      notes: [
        `${rejected}/${items} rejected before Redis; injected: ${attempts.map(([, r]) => `"${r}"`).join(', ')}`,
      ],
    });
  } finally {
    await queue.close();
    await s.close();
  }
}

/** 13. The same idempotency key put 3 times (by three producers): exactly one job, one execution. */
export function idempotency(afterRemoval: boolean) {
  return async (ctx: ScenarioContext): Promise<Row> => {
    const s = await Session.open(
      ctx,
      afterRemoval ? '13b same key again after the job was trimmed' : '13 same idempotency key 3 times',
    );
    const queue = openQueue(s.queue, s.client);
    try {
      const run = new RunStore(s.client, s.queue, s.runId);
      const keepCompleted = afterRemoval ? 0 : retry.keepCompleted;
      await run.create(3, Number(FAST.LEASE_MS), undefined, [], '', null, {
        completed: keepCompleted,
        failed: retry.keepFailed,
      });
      const consumer = s.consumer({ KEEP_COMPLETED: keepCompleted });
      await consumer.waitFor('consumer ready');
      const ids: string[] = [];
      const producers: Producer[] = [];
      for (const pid of ['a', 'b', 'c']) {
        await run.registerProducer(pid, { host: 'chaos', pid: process.pid }, 60_000);
        const producer = createProducer({
          run,
          registry: registry(),
          producerId: pid,
          jobOptions: jobOptions({ ...retry, keepCompleted }),
        });
        producers.push(producer);
        ids.push(await producer.put('ledger', { ms: 50 }, { key: 'order-42' }));
        await producer.flush();
        s.faults++;
        // Variant b: let the first job finish and be trimmed (KEEP_COMPLETED=0) before the key comes again.
        if (afterRemoval)
          await until(
            async () => (await s.client.exists(`${bullKeyPrefix(s.queue)}${ids[0]}`)) === 0,
            10_000,
          );
        else await sleep(10);
      }
      for (const producer of producers) if ((await producer.done()).join.joinedNow) s.harnessJoins++;
      const { joinedAt, checks } = await finishRun(s, { joinTimeoutMs: 30_000 });
      const a = await s.audit({ extraAcknowledged: new Set(ids), keyed: true });
      const starts = a.duplicateStarts + (a.acknowledged > 0 ? 1 : 0);
      const produced = a.status?.jobs.produced;
      return s.row(a, {
        jobs: 1,
        joinedAt,
        faults: '3 puts, 1 key',
        checks: [
          ...checks,
          [new Set(ids).size === 1, `ids ${[...new Set(ids)].join(', ')}`],
          [produced === 1, `the run counted ${produced} jobs`],
          [starts === 1, `the job ran ${starts} times`],
        ],
        notes: afterRemoval
          ? [`KEEP_COMPLETED=0: the run counted ${produced} jobs, the handler ran ${starts} times`]
          : [],
      });
    } finally {
      await queue.close();
      await s.close();
    }
  };
}
