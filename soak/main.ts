import { randomInt } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { findRedisServer, NO_REDIS_SERVER_MESSAGE } from '../shared/redis-server.js';
import { FAULTS } from './menu.js';
import { parseSoakOptions, SOAK_USAGE, SoakUsageError } from './options.js';
import { formatReport, summarize } from './report.js';
import { runSoak } from './soak.js';

/**
 * `npm run soak [-- --minutes M --faults a,b --seed N --cluster --out FILE]`: runs producers and
 * consumers against a private Redis for M minutes under random faults from the menu, checks every
 * run against what its clients were told, prints a table and writes the JSON report. Exit 1 when an
 * invariant failed (the seed and the run/job that broke it are printed), 2 on bad usage.
 */
let parsed;
try {
  parsed = parseSoakOptions(process.argv.slice(2), process.env, () => randomInt(2 ** 31));
} catch (err) {
  if (!(err instanceof SoakUsageError)) throw err;
  process.stderr.write(`soak: ${err.message}\n`);
  process.exit(2);
}
if (parsed.kind === 'help') {
  process.stdout.write(`${SOAK_USAGE}\n`);
  process.exit(0);
}
if (parsed.kind === 'list') {
  for (const [kind, f] of Object.entries(FAULTS))
    process.stdout.write(`${kind.padEnd(22)} ${f.type.padEnd(8)} ${f.what}\n`);
  process.exit(0);
}
const { options } = parsed;
const binary = findRedisServer(process.env.PATH ?? '');
if (!binary) {
  process.stderr.write(`soak: ${NO_REDIS_SERVER_MESSAGE}\n`);
  process.exit(1);
}
const log = (line: string) => process.stderr.write(`${line}\n`);
log(
  `soak: seed ${options.seed} (SOAK_SEED=${options.seed} replays it), ${options.minutes} min${options.cluster ? ', 3-master cluster, SHARDS=3' : ''}; faults: ${options.faults.join(', ') || 'none'}`,
);
// A first Ctrl-C (or SIGTERM) ends the schedule and lets the started runs finish and be checked; a
// second stops at once. Either way every process the soak started is stopped before it exits.
const stop = new AbortController();
const halt = new AbortController();
const onSignal = (signal: NodeJS.Signals) => {
  if (!stop.signal.aborted) {
    log(
      `soak: ${signal}: no more runs or faults; the started runs finish and are checked (again to stop at once)`,
    );
    stop.abort();
  } else if (!halt.signal.aborted) {
    log(`soak: ${signal} again: stopping every process now`);
    halt.abort();
  }
};
process.on('SIGINT', onSignal);
process.on('SIGTERM', onSignal);
const report = await runSoak(options, { binary, log, stop: stop.signal, halt: halt.signal });
const out = options.out ?? join(tmpdir(), `conveyor-soak-${options.seed}.json`);
writeFileSync(out, `${JSON.stringify({ ...report, summary: summarize(report) }, null, 2)}\n`);
process.stdout.write(`\n${formatReport(report)}\n\nJSON report: ${out}\n`);
if (report.kept) process.stdout.write(`logs and ledgers kept in ${report.kept}\n`);
process.exitCode = report.failures.length === 0 ? 0 : 1;
// A halted soak leaves its runs' drivers waiting on processes that are gone.
if (halt.signal.aborted) process.exit();
