import type { Env } from '../../shared/config.js';
import { isEntryModule } from '../../shared/process.js';
import { commandArgsOrExit } from '../../shared/args.js';
import { commands } from '../../shared/commands.js';
import { connectionOf } from '../../lib/options.js';
import { openQueue } from '../../lib/queue.js';
import { startOneShotCommand } from '../../shared/one-shot-command.js';
import { ConfigError } from '../../shared/config.js';
import { closeRedis } from '../../shared/redis.js';
import { startTracingFromEnv, type Tracing } from '../../shared/tracing/index.js';
import { CancelUsageError, runCancel } from './cancel.js';
/** `conveyor cancel`: cancels a run or one of its jobs. */
export async function main(argv: readonly string[], env: Env): Promise<void> {
  const args = commandArgsOrExit(commands.cancel, argv, process);
  const started = args && startOneShotCommand('cancel', env, process);
  if (args && started) {
    const { config, redis, connected, log } = started;
    const values = args.values as { run?: string; job?: string; json?: boolean };
    // A cancel may join the run (its last unfinished job removed): then this process ends the run's trace.
    let tracing: Tracing | undefined;
    // The library's queue handle, on this command's own connection (and its connect timeout).
    const queue = openQueue({ ...connectionOf(config, log), redis });
    try {
      tracing = await startTracingFromEnv(env, 'conveyor-cancel', log);
      await connected('set REDIS_URL to where it is');
      const { code } = await runCancel(
        {
          queue: config.queue,
          runId: values.run ?? config.runId,
          jobId: values.job,
          json: values.json ?? false,
        },
        { queue, out: (line) => process.stdout.write(`${line}\n`) },
      );
      process.exitCode = code;
    } catch (err) {
      process.stderr.write(`cancel: ${err instanceof Error ? err.message : String(err)}\n`);
      process.exitCode = err instanceof CancelUsageError || err instanceof ConfigError ? 2 : 1;
    } finally {
      await queue.close();
      await closeRedis(redis);
      await tracing?.shutdown();
    }
  }
}

if (isEntryModule(import.meta.url, process.argv[1])) await main(process.argv.slice(2), process.env);
