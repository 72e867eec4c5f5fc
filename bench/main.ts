import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { startRedisServer } from '../shared/redis-server.js';
import { projectRoot } from '../shared/roles.js';
import { prepareBench, resultsFile } from './build.js';
import { barChartSvg } from './chart.js';
import { contenders, type ContenderName, type RunSpec } from './contenders.js';
import { runMemory, runOnce } from './measure.js';
import { parseBenchArgs, USAGE } from './options.js';
import { killAll } from './proc.js';
import { redisVersion } from './redis-info.js';
import { percentile } from './stats.js';
import { chartPanels, formatSummary, summarize, type Results } from './report.js';

/**
 * `npm run bench`: conveyor against raw BullMQ, bee-queue and a bare Redis list, each as separate
 * producer and consumer processes running compiled JavaScript against a private redis-server.
 */
async function main(argv: string[], env: NodeJS.ProcessEnv): Promise<number> {
  const prepared = prepareBench('bench', argv, env, parseBenchArgs, USAGE);
  if (typeof prepared === 'number') return prepared;
  const { opts, binary } = prepared;

  const outFile = resultsFile(opts.out, '');
  const cpuProfDir = opts.cpuProf ? outFile.replace(/\.json$/, '') + '-cpuprof' : undefined;
  if (cpuProfDir) mkdirSync(cpuProfDir, { recursive: true });

  const server = await startRedisServer({ binary });
  const redis = new Redis(server.url, { maxRetriesPerRequest: null });
  const stopAll = () => {
    void killAll().finally(() => void server.stop().finally(() => process.exit(130)));
  };
  process.once('SIGINT', stopAll);
  process.once('SIGTERM', stopAll);
  const started = Date.now();
  const results: Results = { throughput: [], callers: [], latency: [], memory: [], scale: [] };
  try {
    let seq = 0;
    const spec = (over: Partial<RunSpec>): RunSpec => ({
      redisUrl: server.url,
      queue: 'bench',
      runId: `bench-${++seq}`,
      jobs: opts.jobs,
      batchSize: 1_000,
      intervalMs: 0,
      concurrency: 10,
      consumers: 1,
      keepCompleted: 1_000,
      cpuProfDir,
      ...over,
    });
    const say = (msg: string) =>
      process.stderr.write(`[${((Date.now() - started) / 1000).toFixed(0).padStart(4)} s] ${msg}\n`);
    // Rotate the order per repeat so no contender always runs first (or last) on a noisy machine.
    const rotated = (names: ContenderName[], r: number) =>
      names.map((_, i) => names[(i + r) % names.length]!);

    if (opts.sections.includes('throughput')) {
      for (let r = 0; r < opts.repeats; r++) {
        for (const mode of opts.modes) {
          for (const concurrency of mode === 'bulk' ? opts.concurrency : opts.singleConcurrency) {
            for (const name of rotated(opts.contenders, r)) {
              const s = spec({
                jobs: mode === 'bulk' ? opts.jobs : opts.singleJobs,
                batchSize: mode === 'bulk' ? 1_000 : 1,
                concurrency,
              });
              const rec = await runOnce(contenders[name], s, redis);
              results.throughput.push({ ...rec, mode, repeat: r + 1 });
              say(
                `throughput ${mode} c=${concurrency} ${name} #${r + 1}: ${rec.ok ? `${rec.jobsPerSec} jobs/s` : `FAILED ${rec.error?.split('\n')[0]}`}`,
              );
            }
          }
        }
      }
    }
    if (opts.sections.includes('callers')) {
      for (let r = 0; r < opts.repeats; r++) {
        for (const name of rotated(opts.contenders, r)) {
          const s = spec({
            jobs: opts.callerJobs,
            batchSize: 1,
            concurrency: 100,
            putCallers: opts.putCallers,
          });
          const rec = await runOnce(contenders[name], s, redis);
          results.callers.push({ ...rec, putCallers: opts.putCallers, repeat: r + 1 });
          say(
            `callers ${opts.putCallers} ${name} #${r + 1}: ${rec.ok ? `${rec.putJobsPerSec} puts/s, ${rec.jobsPerSec} jobs/s end to end` : `FAILED ${rec.error?.split('\n')[0]}`}`,
          );
        }
      }
    }
    if (opts.sections.includes('latency')) {
      for (const name of opts.contenders) {
        const s = spec({
          jobs: opts.latencyJobs,
          batchSize: 1,
          intervalMs: opts.latencyIntervalMs,
          keepCompleted: Math.max(1_000, opts.latencyJobs),
        });
        const rec = await runOnce(contenders[name], s, redis);
        results.latency.push({ ...rec, intervalMs: opts.latencyIntervalMs });
        say(
          `latency ${name}: ${rec.ok ? `${rec.latencies?.length ?? 0} samples` : `FAILED ${rec.error?.split('\n')[0]}`}`,
        );
      }
    }
    if (opts.sections.includes('memory')) {
      for (const name of opts.contenders) {
        const rec = await runMemory(
          contenders[name],
          spec({ jobs: opts.memoryJobs, concurrency: 100 }),
          redis,
        );
        results.memory.push(rec);
        say(
          `memory ${name}: ${rec.ok ? `${rec.usedPer10kWaiting} B per 10k waiting` : `FAILED ${rec.error?.split('\n')[0]}`}`,
        );
      }
    }
    if (opts.sections.includes('scale')) {
      for (const jobs of opts.scaleJobs) {
        const counts = jobs === opts.bigJobs ? opts.scaleConsumers.slice(0, 1) : opts.scaleConsumers;
        for (const consumers of counts) {
          for (const name of opts.scaleContenders) {
            const rec = await runOnce(
              contenders[name],
              spec({ jobs, consumers, concurrency: opts.scaleConcurrency }),
              redis,
            );
            results.scale.push(rec);
            say(
              `scale ${jobs} jobs × ${consumers} consumers ${name}: ${rec.ok ? `${rec.jobsPerSec} jobs/s` : `FAILED ${rec.error?.split('\n')[0]}`}`,
            );
          }
        }
      }
    }

    const summary = summarize(results, opts.contenders, { bigJobs: opts.bigJobs });
    const meta = {
      startedAt: new Date(started).toISOString(),
      durationS: Math.round((Date.now() - started) / 1000),
      command: `npm run bench${argv.length ? ` -- ${argv.join(' ')}` : ''}`,
      node: process.version,
      redis: await redisVersion(redis),
      cpus: cpus().length,
      cpuModel: cpus()[0]?.model ?? '?',
      memoryGb: Math.round(totalmem() / 2 ** 30),
      options: opts,
    };
    // Latency samples are summarized; the raw arrays would dwarf the file.
    const slim = {
      ...results,
      callers: results.callers.map(({ putLatencies, ...rest }) => ({
        ...rest,
        putP50Ms: percentile(putLatencies ?? [], 50),
        putP99Ms: percentile(putLatencies ?? [], 99),
      })),
      latency: results.latency.map(({ latencies, ...rest }) => ({
        ...rest,
        samples: latencies?.length ?? 0,
      })),
    };
    const json = `${JSON.stringify({ meta, summary, runs: slim }, null, 2)}\n`;
    writeFileSync(outFile, json);
    const svg = barChartSvg(
      'conveyor vs raw BullMQ, bee-queue and a bare Redis list: end-to-end jobs/s',
      `${opts.jobs} jobs (one at a time: ${opts.singleJobs}), 1 consumer process, median of ${opts.repeats}; node ${process.version}, Redis ${meta.redis}, ${meta.cpus} CPUs`,
      chartPanels(summary, opts.contenders),
    );
    writeFileSync(outFile.replace(/\.json$/, '.svg'), svg);
    if (opts.docs) {
      mkdirSync(join(projectRoot, 'docs'), { recursive: true });
      writeFileSync(join(projectRoot, 'docs', 'bench-chart.svg'), svg);
      writeFileSync(join(projectRoot, 'docs', 'bench-reference.json'), json);
    }
    process.stdout.write(
      `${formatSummary(summary)}\n\nResults: ${outFile}\nFinished in ${meta.durationS} s.\n`,
    );
    return 0;
  } finally {
    await killAll();
    await redis.quit().catch(() => redis.disconnect());
    await server.stop();
  }
}

process.exitCode = await main(process.argv.slice(2), process.env);
