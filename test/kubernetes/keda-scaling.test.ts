import { setTimeout as sleep } from 'node:timers/promises';
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { startMetricsServer } from '../../shared/metrics/metrics-server.js';
import { registerRunMetrics } from '../../shared/metrics/run-metrics.js';
import { readRunStatus } from '../../shared/run/status.js';
import { FAST } from '../helpers/demo.js';
import { startPrometheus } from '../helpers/prometheus-server.js';
import { exitOf, spawnRole } from '../helpers/processes.js';
import { pollUntil, redisUrl } from '../helpers/redis.js';
import { useTestQueue } from '../helpers/test-queue.js';
import { replayScaling, type ScalingSpec } from './keda-model.js';
import { readManifests, scaledObjectTrigger } from './manifests.js';

/** One poll here stands for one KEDA pollingInterval: the run is compressed, the decisions are not. */
const POLL_MS = 1_000;

describe('KEDA scaling on a run’s unfinished work (the ScaledObject’s query against a real Prometheus)', () => {
  const ctx = useTestQueue();
  const trigger = scaledObjectTrigger(readManifests());
  const spec: ScalingSpec = {
    threshold: trigger.threshold,
    activationThreshold: trigger.activationThreshold,
    minReplicas: trigger.minReplicas,
    maxReplicas: trigger.maxReplicas,
    cooldownPolls: trigger.cooldownSeconds / trigger.pollingSeconds,
    // the HPA scale-down window in keda.yaml (60 s), in polls
    stabilizationPolls: 60 / trigger.pollingSeconds,
  };

  it('replays KEDA and the HPA: up with the value at once, down through the window, to 0 after the cooldown', () => {
    const s = { ...spec, threshold: 10, maxReplicas: 3, cooldownPolls: 3, stabilizationPolls: 2 };
    expect(replayScaling([0, 5, 25, 40, 12, 12, 0, 0, 0, 0], s).map((x) => x.replicas)).toEqual([
      0, 1, 3, 3, 3, 2, 2, 1, 0, 0,
    ]);
  });

  it('asks for consumers while jobs wait, more as the backlog grows, and none after the join', async () => {
    // The dashboard's /metrics, served from the modules the dashboard mounts.
    const registry = new Registry();
    const runMetrics = registerRunMetrics(registry, {
      redis: ctx.redis,
      queues: [ctx.queue],
      leaseMs: 3_000,
    });
    const server = await startMetricsServer({ registry, port: 0, host: '127.0.0.1' });
    ctx.cleanups.push(
      () => runMetrics.close(),
      () => server.close(),
    );
    const prometheus = await startPrometheus([`127.0.0.1:${server.port}`]);
    ctx.cleanups.push(() => prometheus.stop());
    const query = trigger.query.replace('queue="conveyor"', `queue="${ctx.queue}"`);
    expect(query).not.toBe(trigger.query);
    const read = async () => {
      const r = await prometheus.query(query);
      expect(r).toHaveLength(1);
      return Number(r[0]!.value[1]);
    };
    // Prometheus is scraping the endpoint before the run exists.
    await pollUntil('a first scrape', async () =>
      (await prometheus.query('up == 1')).length === 1 ? true : undefined,
    );

    const values: number[] = [];
    const joined = { at: -1 };
    const poller = (async () => {
      // Until the join, then for the cooldown and one more poll.
      while (joined.at < 0 || values.length < joined.at + spec.cooldownPolls + 2) {
        values.push(await read());
        if (joined.at < 0 && (await readRunStatus(ctx.redis, ctx.queue, 'k', 3_000))?.join.state === 'joined')
          joined.at = values.length;
        await sleep(POLL_MS);
      }
    })();
    await sleep(2 * POLL_MS);

    // Producers outpace the consumers for a few seconds (400 jobs at about 80/s; 2 consumers x 2 slots
    // of 100 ms jobs take about 40/s): the backlog grows, then drains.
    const env = { ...FAST, REDIS_URL: redisUrl(), QUEUE: ctx.queue, RUN_ID: 'k', PRODUCERS: '1' };
    const producer = spawnRole(
      'producer',
      { ...env, PRODUCER_ID: 'p', JOBS: '400', BATCH_SIZE: '20', PRODUCE_INTERVAL_MS: '250', JOB_MS: '100' },
      { label: 'p' },
    );
    const consumers = ['c1', 'c2'].map((id) =>
      spawnRole('consumer', { ...env, CONSUMER_ID: id, CONCURRENCY: '2' }, { label: id }),
    );
    for (const p of [producer, ...consumers]) expect((await exitOf(p, 60_000)).code, p.output()).toBe(0);
    await poller;

    const steps = replayScaling(values, spec);
    console.log(
      `poll  unfinished  replicas (threshold ${spec.threshold}, max ${spec.maxReplicas}, cooldown ${spec.cooldownPolls} polls; joined at poll ${joined.at})\n` +
        steps
          .map((s, i) => `${String(i).padStart(4)}  ${String(s.value).padStart(10)}  ${s.replicas}`)
          .join('\n'),
    );
    const peak = Math.max(...values);
    const peakAt = values.indexOf(peak);
    // Nothing to do before the run: no consumer.
    expect(steps[0]!.replicas).toBe(0);
    // While jobs wait, never zero consumers.
    for (const s of steps) if (s.value > 0) expect(s.replicas).toBeGreaterThan(0);
    // Rising with the backlog: more than one consumer asked for at the peak, after fewer before it.
    expect(peak).toBeGreaterThan(spec.threshold);
    expect(steps[peakAt]!.replicas).toBe(Math.min(spec.maxReplicas, Math.ceil(peak / spec.threshold)));
    expect(steps.slice(0, peakAt).some((s) => s.replicas > 0 && s.replicas < steps[peakAt]!.replicas)).toBe(
      true,
    );
    // The join: once a scrape after it has landed, the query reads 0, and after the cooldown KEDA
    // asks for none.
    const settled = values.slice(joined.at + 2);
    expect(settled.length).toBeGreaterThan(spec.cooldownPolls - 2);
    expect(settled).toEqual(settled.map(() => 0));
    expect(steps.at(-1)!.replicas).toBe(0);
  }, 90_000);
});
