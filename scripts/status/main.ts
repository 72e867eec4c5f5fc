import { parseArgs } from 'node:util';
import { commonShape, nameSchema, parseEnv, toCommonConfig } from '../../shared/config.js';
import { startProcess } from '../../shared/process.js';
import { closeRedis, createRedis, waitUntilReady } from '../../shared/redis.js';
import { formatRunStatus, listRuns, readRunStatus } from '../../shared/run/status.js';
import { optionalName } from '../../shared/config.js';

const started = startProcess(
  'status',
  (env) => {
    const e = parseEnv({ ...commonShape, RUN_ID: optionalName() }, env);
    return { ...toCommonConfig(e), runId: e.RUN_ID };
  },
  process,
);
if (started) {
  const { config, log } = started;
  const { values } = parseArgs({
    options: {
      json: { type: 'boolean', default: false },
      run: { type: 'string' },
      list: { type: 'boolean', default: false },
    },
  });
  const redis = createRedis(config, log, 'conveyor:status');
  try {
    await waitUntilReady(redis, log);
    if (values.list) {
      const runs = await listRuns(redis, config.queue);
      process.stdout.write(values.json ? `${JSON.stringify(runs)}\n` : `${runs.join('\n')}\n`);
    } else {
      const runId = values.run ?? config.runId ?? (await listRuns(redis, config.queue, 1))[0];
      if (runId !== undefined && !nameSchema.safeParse(runId).success)
        throw new Error(`--run: "${runId}" is not a valid run id`);
      const status =
        runId === undefined ? null : await readRunStatus(redis, config.queue, runId, config.leaseMs);
      if (!status) {
        process.stderr.write(`status: no run ${runId ? `"${runId}" ` : ''}on queue "${config.queue}"\n`);
        process.exitCode = 1;
      } else {
        process.stdout.write(values.json ? `${JSON.stringify(status)}\n` : `${formatRunStatus(status)}\n`);
      }
    }
  } catch (err) {
    process.stderr.write(`status: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  } finally {
    await closeRedis(redis);
  }
}
