import { parseArgs } from 'node:util';
import { commonShape, optionalName, parseEnv, toCommonConfig } from '../../shared/config.js';
import { startProcess } from '../../shared/process.js';
import { closeRedis, createRedis, waitUntilReady } from '../../shared/redis.js';
import { CancelUsageError, runCancel } from './cancel.js';

const started = startProcess(
  'cancel',
  (env) => {
    const e = parseEnv({ ...commonShape, RUN_ID: optionalName() }, env);
    return { ...toCommonConfig(e), runId: e.RUN_ID };
  },
  process,
);
if (started) {
  const { config, log } = started;
  let values: { run?: string; job?: string; json?: boolean };
  try {
    ({ values } = parseArgs({
      options: {
        run: { type: 'string' },
        job: { type: 'string' },
        json: { type: 'boolean', default: false },
      },
    }));
  } catch (err) {
    process.stderr.write(`cancel: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(2);
  }
  const redis = createRedis(config, log, 'conveyor:cancel');
  try {
    await waitUntilReady(redis, log);
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
