import { commandArgsOrExit } from '../../shared/args.js';
import { commands } from '../../shared/commands.js';
import { commonShape, optionalName, parseEnv, toCommonConfig } from '../../shared/config.js';
import { startProcess } from '../../shared/process.js';
import { closeRedis, createRedis, readyWithin } from '../../shared/redis.js';
import { CancelUsageError, runCancel } from './cancel.js';

/** A one-shot command: a Redis that does not answer is an error to report, not an outage to wait out. */
const CONNECT_TIMEOUT_MS = 5_000;

const args = commandArgsOrExit(commands.cancel, process);
const started =
  args &&
  startProcess(
    'cancel',
    (env) => {
      const e = parseEnv({ ...commonShape, RUN_ID: optionalName() }, env);
      return { ...toCommonConfig(e), runId: e.RUN_ID };
    },
    process,
  );
if (args && started) {
  const { config, log } = started;
  const values = args.values as { run?: string; job?: string; json?: boolean };
  const redis = createRedis(config, log, 'conveyor:cancel');
  try {
    await readyWithin(redis, log, config.redisUrl, CONNECT_TIMEOUT_MS, 'set REDIS_URL to where it is');
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
    process.exitCode = err instanceof CancelUsageError ? 2 : 1;
  } finally {
    await closeRedis(redis);
  }
}
