import type { Env } from '../../shared/config.js';
import { isEntryModule } from '../../shared/process.js';
import { commandArgsOrExit } from '../../shared/args.js';
import { commands } from '../../shared/commands.js';
import { nameSchema } from '../../shared/config.js';
import { startOneShotCommand } from '../../shared/one-shot-command.js';
import { closeRedis } from '../../shared/redis.js';
import { formatRunResults } from '../../shared/run/outcomes.js';
import { readRunResults } from '../../shared/run/run-results.js';
import { RunStore } from '../../shared/run/run-store.js';
import { formatRunList, formatRunStatus, listRuns, readRunStatus } from '../../shared/run/status.js';
/** `conveyor status`: prints a run's state, or the queue's runs. */
export async function main(argv: readonly string[], env: Env): Promise<void> {
  const args = commandArgsOrExit(commands.status, argv, process);
  const started = args && startOneShotCommand('status', env, process);
  if (args && started) {
    const { config, redis, connected } = started;
    const values = args.values as { json?: boolean; run?: string; list?: boolean; results?: boolean };
    try {
      if (values.run !== undefined && values.list) throw new Error('give --run or --list, not both');
      if (values.results && values.list) throw new Error('give --results or --list, not both');
      await connected(
        "is it running? Set REDIS_URL to where it is. (The demo's private Redis stops when the demo ends.)",
      );
      if (values.list) {
        const ids = await listRuns(redis, config.queue, 20);
        const runs = (
          await Promise.all(ids.map((id) => readRunStatus(redis, config.queue, id, config.leaseMs)))
        ).filter((s) => s !== null);
        process.stdout.write(
          values.json ? `${JSON.stringify(runs)}\n` : `${formatRunList(runs, config.queue)}\n`,
        );
      } else {
        const runId = values.run ?? config.runId ?? (await listRuns(redis, config.queue, 1))[0];
        if (runId !== undefined && !nameSchema.safeParse(runId).success)
          throw new Error(`--run: "${runId}" is not a valid run id`);
        const status =
          runId === undefined ? null : await readRunStatus(redis, config.queue, runId, config.leaseMs);
        if (!status) {
          process.stderr.write(`status: no run ${runId ? `"${runId}" ` : ''}on queue "${config.queue}"\n`);
          process.exitCode = 1;
        } else if (values.results) {
          const store = new RunStore(redis, config.queue, status.runId, status.shards.length);
          if (!(await store.resultBounds()))
            throw new Error(
              `run "${status.runId}" was not created with COLLECT_RESULTS=true: it kept no results`,
            );
          if (status.join.state !== 'joined')
            throw new Error(
              `run "${status.runId}" has not joined yet: its results are complete only after the join`,
            );
          const results = await readRunResults(redis, store);
          process.stdout.write(
            values.json ? `${JSON.stringify(results)}\n` : `${formatRunResults(results)}\n`,
          );
        } else {
          process.stdout.write(values.json ? `${JSON.stringify(status)}\n` : `${formatRunStatus(status)}\n`);
        }
      }
    } catch (err) {
      process.stderr.write(`status: ${err instanceof Error ? err.message : String(err)}\n`);
      process.exitCode = 1;
    } finally {
      if (redis.status === 'ready') await closeRedis(redis);
      else redis.disconnect();
    }
  }
}

if (isEntryModule(import.meta.url, process.argv[1])) await main(process.argv.slice(2), process.env);
