import type { Env } from '../../shared/config.js';
import { inspect } from 'node:util';
import { commandArgsOrExit } from '../../shared/args.js';
import { commands } from '../../shared/commands.js';
import { loadConsumerConfig } from '../../consumers/config.js';
import { ConfigError, int, parseEnv } from '../../shared/config.js';
import { loadJobRegistry } from '../../shared/jobs/index.js';
import { startProcess, isEntryModule } from '../../shared/process.js';
import { openQueue } from '../../shared/queue.js';
import { closeRedis, createRedis, waitUntilReady } from '../../shared/redis.js';
import { slotOf } from '../../shared/run/outcomes.js';
import { gather } from './gather.js';
/** `conveyor gather N`: N sleep jobs in a fresh run, their results in order. */
export async function main(argv: readonly string[], env: Env): Promise<void> {
  const args = commandArgsOrExit(commands.gather, argv, process);
  const started =
    args &&
    startProcess(
      'gather',
      (env) => {
        const { positionals } = args;
        if (positionals.length > 1)
          throw new ConfigError([`argument: one job count, like 5 (got ${positionals.length} arguments)`]);
        const n = Number(positionals[0] ?? '5');
        if (!Number.isInteger(n) || n < 0 || n > 100_000)
          throw new ConfigError([
            `argument: the job count must be a whole number from 0 to 100000 (got ${JSON.stringify(positionals[0])})`,
          ]);
        const e = parseEnv(
          {
            JOB_MS: int(1_000, 0, 3_600_000),
            ATTEMPTS: int(3, 1, 1_000),
            BACKOFF_MS: int(1_000, 0, 3_600_000),
          },
          env,
        );
        return {
          ...loadConsumerConfig(env),
          n,
          jobMs: e.JOB_MS,
          retry: { attempts: e.ATTEMPTS, backoffMs: e.BACKOFF_MS, keepCompleted: 1_000, keepFailed: 10_000 },
        };
      },
      env,
      process,
    );
  if (started) {
    const { config, log } = started;
    const redis = createRedis(config, log, 'conveyor:gather');
    const queue = openQueue(config.queue, redis);
    try {
      await waitUntilReady(redis, log);
      const registry = await loadJobRegistry(config.jobModules, process.cwd());
      const results = await gather(config.n, config.jobMs, config.retry, {
        redis,
        queue,
        registry,
        log,
        pid: process.pid,
        consumerConfig: config,
      });
      process.stdout.write(`${inspect(results.map(slotOf), { depth: 4 })}\n`);
      const ended = results.filter((r) => r.outcome !== 'completed').length;
      if (ended > 0) {
        process.stderr.write(`gather: ${ended} of ${results.length} jobs did not complete\n`);
        process.exitCode = 1;
      }
    } catch (err) {
      process.stderr.write(`gather: ${err instanceof Error ? err.message : String(err)}\n`);
      process.exitCode = 1;
    } finally {
      await queue.close();
      await closeRedis(redis);
    }
  }
}

if (isEntryModule(import.meta.url, process.argv[1])) await main(process.argv.slice(2), process.env);
