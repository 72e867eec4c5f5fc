import { createReadStream } from 'node:fs';
import type { Env } from '../shared/config.js';
import { commandArgsOrExit } from '../shared/args.js';
import { commands } from '../shared/commands.js';
import { loadJobRegistry } from '../shared/jobs/index.js';
import { startProcessEndpoint } from '../shared/metrics/process-endpoint.js';
import { createProducerMetrics } from '../shared/metrics/process-metrics.js';
import { checkInput, startProcess, isEntryModule } from '../shared/process.js';
import { RedisConfigError } from '../shared/redis.js';
import { EvictionPolicyError } from '../shared/redis-policy.js';
import { RunError } from '../shared/run/run-store.js';
import { onShutdownSignal } from '../shared/shutdown.js';
import { startTracingFromEnv } from '../shared/tracing/index.js';
import { loadProducerConfig } from './config.js';
import { checkReadable } from './jobs-file.js';
import { JobLineError } from './job-lines.js';
import { openProducerClient } from './open.js';
import { checkProducible, runProducer } from './run-producer.js';
/** `conveyor producer`: one producer process, on the same producer handle as the library's openProducer. */
export async function main(argv: readonly string[], env: Env): Promise<void> {
  const started =
    commandArgsOrExit(commands.producer, argv, process) &&
    startProcess('producer', loadProducerConfig, env, process);
  if (started) {
    const { config, log: baseLog } = started;
    const log = baseLog.child({ runId: config.runId, producerId: config.producerId });
    const registry = await checkInput('producer', process, async () => {
      const r = await loadJobRegistry(config.jobModules, process.cwd());
      checkProducible(config, r);
      if (config.jobsFile !== null) await checkReadable(config.jobsFile);
      return r;
    });
    if (!registry) process.exit(2);
    const tracing = await checkInput('producer', process, () =>
      startTracingFromEnv(env, 'conveyor-producer', log),
    );
    if (!tracing) process.exit(2);
    const jobsInput =
      config.jobsFile === null
        ? undefined
        : config.jobsFile === '-'
          ? process.stdin
          : createReadStream(config.jobsFile);
    const metrics = await startProcessEndpoint(config.metrics, 'producer', log);
    const stop = new AbortController();
    onShutdownSignal(process, log, config.shutdownGraceMs, () => {
      metrics.setReady(false);
      stop.abort();
    });
    let opened = false;
    try {
      const outcome = await runProducer(
        config,
        {
          open: async () => {
            const producer = await openProducerClient(config, {
              registry,
              log: baseLog,
              signal: stop.signal,
              onQueueError: (message) => log.warn({ err: message }, 'queue error'),
            });
            opened = true;
            metrics.setReady(!stop.signal.aborted);
            return producer;
          },
          log,
          observer: createProducerMetrics(metrics.registry, config.queue),
          jobsInput,
          registry,
        },
        stop.signal,
      );
      metrics.setReady(false);
      process.exitCode = outcome.lost ? 1 : 0;
      await metrics.linger(stop.signal);
    } catch (err) {
      if (err instanceof JobLineError) {
        // Not reported done: run again with the same RUN_ID and PRODUCER_ID, and the lines already
        // put are not put again (their keys), while this producer's lease has not run out.
        process.stderr.write(
          `producer: ${err.message}. Nothing after it was put; fix the line and run again with the same RUN_ID and PRODUCER_ID (lines already put are skipped).\n`,
        );
        process.exitCode = 2;
      } else if (stop.signal.aborted && !opened) {
        // A signal while waiting for Redis at start-up: nothing was enqueued, so giving up is a clean stop.
        log.info('stopped before start-up finished');
        process.exitCode = 0;
      } else {
        // These carry a message that says what to do; anything else gets its stack.
        if (err instanceof RunError || err instanceof RedisConfigError || err instanceof EvictionPolicyError)
          log.error(err.message);
        else log.error({ err }, 'producer failed');
        process.exitCode = 1;
      }
    } finally {
      await metrics.close().catch((err: unknown) => log.warn({ err: String(err) }, 'metrics close failed'));
      await tracing.shutdown();
    }
  }
}

if (isEntryModule(import.meta.url, process.argv[1])) await main(process.argv.slice(2), process.env);
