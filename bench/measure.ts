import type { Redis } from 'ioredis';
import type { Contender, RunSpec } from './contenders.js';
import { cpuMs, killAll, rssMb, sampleProcs, sleep, within, type BenchChild } from './proc.js';
import { commandStats, cpuSeconds, memory, resetRedis, type CommandStat } from './redis-info.js';

export type RunRecord = {
  contender: string;
  jobs: number;
  batchSize: number;
  concurrency: number;
  consumers: number;
  ok: boolean;
  error?: string;
  /** First add → last completion. */
  durationMs?: number;
  jobsPerSec?: number;
  /** conveyor: last completion → run joined, and joined → every consumer process exited. */
  lastDoneToJoinedMs?: number;
  joinedToExitedMs?: number;
  rssIdleMb: number[];
  rssPeakMb: number[];
  /** Busiest Redis commands during the run (INFO commandstats). */
  commands?: CommandStat[];
  /** Redis commands per job, all of them: a script call counts once, and so does each command it runs. */
  commandsPerJob?: number;
  /** Redis used_memory once the run is over (MB): what a finished run leaves behind. */
  redisUsedAfterMb?: number;
  /** CPU time per job (µs) of Redis, the producer process and all consumer processes, first add → exit. */
  cpuUsPerJob?: { redis: number; producer: number; consumers: number };
  /** With concurrent put callers: first put → last put resolved, and each put's latency (ms). */
  putJobsPerSec?: number;
  putLatencies?: number[];
};

const runTimeoutMs = (spec: RunSpec) =>
  60_000 + (spec.jobs / 300) * 1_000 + spec.jobs * spec.intervalMs * 1.5;

/** One end-to-end run: consumers up and idle, then one producer, until every job is done and consumers exited. */
export async function runOnce(
  c: Contender,
  spec: RunSpec,
  redis: Redis,
): Promise<RunRecord & { latencies?: number[] }> {
  const base: RunRecord = {
    contender: c.name,
    jobs: spec.jobs,
    batchSize: spec.batchSize,
    concurrency: spec.concurrency,
    consumers: spec.consumers,
    ok: false,
    rssIdleMb: [],
    rssPeakMb: [],
  };
  await resetRedis(redis);
  const consumers: BenchChild[] = [];
  try {
    for (let i = 1; i <= spec.consumers; i++) consumers.push(c.startConsumer(spec, i));
    await within(`${c.name} consumers' start-up`, 60_000, c.ready(spec, consumers, redis));
    await sleep(300);
    base.rssIdleMb = consumers.map((p) => round(rssMb(p.pid) ?? 0));
    await redis.config('RESETSTAT');
    const idleCpuMs = consumers.map((p) => cpuMs(p.pid) ?? 0);
    const redisCpuBefore = await cpuSeconds(redis);
    const sampler = sampleProcs(consumers.map((p) => p.pid));
    const producer = c.startProducer(spec);
    const producerSampler = sampleProcs([producer.pid]);
    await within(
      `${c.name} run of ${spec.jobs} jobs`,
      runTimeoutMs(spec),
      c.finish(spec, consumers, producer),
    );
    const exitedAt = Math.max(...(await Promise.all(consumers.map((p) => p.exit))).map((e) => e.at));
    const consumerSamples = sampler.stop();
    const producerCpuMs = producerSampler.stop().cpuMs[0]!;
    const redisCpuMs = ((await cpuSeconds(redis)) - redisCpuBefore) * 1_000;
    base.rssPeakMb = consumerSamples.rssMb.map(round);
    base.redisUsedAfterMb = round((await memory(redis)).usedMemory / 1_048_576);
    const stats = await commandStats(redis);
    base.commands = stats.slice(0, 12);
    // The two INFO calls above are the harness's own, and negligible against thousands of jobs.
    base.commandsPerJob = round(stats.reduce((n, st) => n + st.calls, 0) / spec.jobs);
    const perJob = (ms: number) => round((ms * 1_000) / spec.jobs);
    base.cpuUsPerJob = {
      redis: perJob(redisCpuMs),
      producer: perJob(producerCpuMs),
      consumers: perJob(consumerSamples.cpuMs.reduce((a, v, i) => a + v - idleCpuMs[i]!, 0)),
    };
    const t = await c.times(spec, consumers, producer, redis);
    if (t.completed !== spec.jobs)
      throw new Error(`${c.name}: ${t.completed} of ${spec.jobs} jobs completed`);
    const durationMs = t.lastDoneAt - t.firstAddAt;
    if (!(durationMs > 0))
      throw new Error(`${c.name}: no valid add/finish times (${t.firstAddAt} → ${t.lastDoneAt})`);
    const record: RunRecord & { latencies?: number[] } = {
      ...base,
      ok: true,
      durationMs,
      jobsPerSec: Math.round((spec.jobs / durationMs) * 1_000),
    };
    if (t.joinedAt !== undefined) {
      record.lastDoneToJoinedMs = t.joinedAt - t.lastDoneAt;
      record.joinedToExitedMs = exitedAt - t.joinedAt;
    }
    if (spec.keepCompleted >= spec.jobs) record.latencies = await c.latencies(spec, consumers, redis);
    const added = producer.lines.filter((l) => l.ev === 'added').at(-1);
    if (added?.putLatencies) {
      const window = Number(added.lastAddAt) - Number(added.firstAddAt);
      record.putJobsPerSec = window > 0 ? Math.round((spec.jobs / window) * 1_000) : undefined;
      record.putLatencies = added.putLatencies as number[];
    }
    return record;
  } catch (err) {
    return { ...base, ok: false, error: err instanceof Error ? err.message : String(err) };
  } finally {
    await killAll();
  }
}

export type MemoryRecord = {
  contender: string;
  jobs: number;
  ok: boolean;
  error?: string;
  /** INFO memory used_memory growth per 10k waiting jobs, bytes. */
  usedPer10kWaiting?: number;
  /** The same for used_memory_dataset (data only, without scripts and client buffers). */
  datasetPer10kWaiting?: number;
  /** used_memory left over after every job completed (vs the empty server), bytes. */
  usedAfterCompletion?: number;
};

/** Fills the queue with no consumer running, measures, then drains it with one consumer and measures again. */
export async function runMemory(c: Contender, spec: RunSpec, redis: Redis): Promise<MemoryRecord> {
  const base: MemoryRecord = { contender: c.name, jobs: spec.jobs, ok: false };
  await resetRedis(redis);
  try {
    const empty = await memory(redis);
    const producer = c.startProducer(spec);
    const { code } = await within(`${c.name} producer`, runTimeoutMs(spec), producer.exit);
    if (code !== 0) throw new Error(`${producer.label} exited with code ${code}:\n${producer.stderr()}`);
    await sleep(200);
    const full = await memory(redis);
    const consumer = c.startConsumer(spec, 1);
    await within(`${c.name} drain`, runTimeoutMs(spec), c.finish(spec, [consumer], producer));
    await sleep(200);
    const after = await memory(redis);
    const per10k = (bytes: number) => Math.round((bytes / spec.jobs) * 10_000);
    return {
      ...base,
      ok: true,
      usedPer10kWaiting: per10k(full.usedMemory - empty.usedMemory),
      datasetPer10kWaiting: per10k(full.dataset - empty.dataset),
      usedAfterCompletion: after.usedMemory - empty.usedMemory,
    };
  } catch (err) {
    return { ...base, ok: false, error: err instanceof Error ? err.message : String(err) };
  } finally {
    await killAll();
  }
}

const round = (v: number) => Math.round(v * 10) / 10;
