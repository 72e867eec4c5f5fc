import type { Env } from '../../shared/config.js';
import { isEntryModule } from '../../shared/process.js';
import { commandArgsOrExit } from '../../shared/args.js';
import { commands } from '../../shared/commands.js';
import { nameSchema } from '../../shared/config.js';
import { openQueue, type QueueHandle } from '../../lib/queue.js';
import { connectionOf } from '../../lib/options.js';
import type { RunHandle } from '../../lib/run.js';
import { startOneShotCommand } from '../../shared/one-shot-command.js';
import { closeRedis } from '../../shared/redis.js';
import { formatRunResults } from '../../shared/run/outcomes.js';
import { RunError } from '../../shared/run/run-store.js';
import { formatRunList, formatRunStatus, type RunStatus } from '../../shared/run/status.js';

type StatusFlags = { json?: boolean; run?: string; list?: boolean; results?: boolean };

/** `conveyor status`: prints a run's state, or the queue's runs. */
export async function main(argv: readonly string[], env: Env): Promise<void> {
  const args = commandArgsOrExit(commands.status, argv, process);
  const started = args && startOneShotCommand('status', env, process);
  if (args && started) {
    const { config, redis, connected, log } = started;
    const values = args.values as StatusFlags;
    // The library's handles, on this command's own connection (and its connect timeout).
    const connection = { ...connectionOf(config, log), redis };
    const queue = openQueue(connection);
    try {
      if (values.run !== undefined && values.list) throw new Error('give --run or --list, not both');
      if (values.results && values.list) throw new Error('give --results or --list, not both');
      await connected(
        "is it running? Set REDIS_URL to where it is. (The demo's private Redis stops when the demo ends.)",
      );
      if (values.list) {
        const runs = await queue.runs({ limit: 20 });
        process.stdout.write(
          values.json ? `${JSON.stringify(runs)}\n` : `${formatRunList(runs, config.queue)}\n`,
        );
      } else {
        await printRun(queue, values, values.run ?? config.runId);
      }
    } catch (err) {
      process.stderr.write(`status: ${err instanceof Error ? err.message : String(err)}\n`);
      process.exitCode = 1;
    } finally {
      await queue.close();
      if (redis.status === 'ready') await closeRedis(redis);
      else redis.disconnect();
    }
  }
}

/** One run (the given one, else the newest): its status, or with --results its results. */
async function printRun(queue: QueueHandle, values: StatusFlags, given: string | undefined): Promise<void> {
  const runId = given ?? (await queue.latestRunId()) ?? undefined;
  if (runId !== undefined && !nameSchema.safeParse(runId).success)
    throw new Error(`--run: "${runId}" is not a valid run id`);
  // The queue's handle opens it with the shard count it was created with.
  const run = runId === undefined ? null : await queue.run(runId);
  const status = run ? await run.status() : null;
  if (!run || !status) {
    process.stderr.write(`status: no run ${runId ? `"${runId}" ` : ''}on queue "${queue.name}"\n`);
    process.exitCode = 1;
  } else if (values.results) {
    const results = await resultsOf(run, status);
    process.stdout.write(values.json ? `${JSON.stringify(results)}\n` : `${formatRunResults(results)}\n`);
  } else {
    process.stdout.write(values.json ? `${JSON.stringify(status)}\n` : `${formatRunStatus(status)}\n`);
  }
}

/** The run's results, its refusals worded with the commands' variable (COLLECT_RESULTS). */
async function resultsOf(run: RunHandle, status: RunStatus) {
  try {
    return await run.results();
  } catch (err) {
    if (err instanceof RunError && (err.code === 'no-results' || err.code === 'no-run'))
      throw new Error(`run "${status.runId}" was not created with COLLECT_RESULTS=true: it kept no results`, {
        cause: err,
      });
    throw err;
  }
}

if (isEntryModule(import.meta.url, process.argv[1])) await main(process.argv.slice(2), process.env);
