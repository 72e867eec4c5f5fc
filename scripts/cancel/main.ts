import { commandArgsOrExit } from '../../shared/args.js';
import { commands } from '../../shared/commands.js';
import { startOneShotCommand } from '../../shared/one-shot-command.js';
import { ConfigError } from '../../shared/config.js';
import { closeRedis } from '../../shared/redis.js';
import { startTracingFromEnv, type Tracing } from '../../shared/tracing/index.js';
import { CancelUsageError, runCancel } from './cancel.js';

const args = commandArgsOrExit(commands.cancel, process);
const started = args && startOneShotCommand('cancel', process);
if (args && started) {
  const { config, redis, connected, log } = started;
  const values = args.values as { run?: string; job?: string; json?: boolean };
  // A cancel may join the run (its last unfinished job removed): then this process ends the run's trace.
  let tracing: Tracing | undefined;
  try {
    tracing = await startTracingFromEnv(process.env, 'conveyor-cancel', log);
    await connected('set REDIS_URL to where it is');
    const { code } = await runCancel(
      {
        queue: config.queue,
        runId: values.run ?? config.runId,
        jobId: values.job,
        json: values.json ?? false,
      },
      { redis, out: (line) => process.stdout.write(`${line}\n`) },
    );
    process.exitCode = code;
  } catch (err) {
    process.stderr.write(`cancel: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = err instanceof CancelUsageError || err instanceof ConfigError ? 2 : 1;
  } finally {
    await closeRedis(redis);
    await tracing?.shutdown();
  }
}
