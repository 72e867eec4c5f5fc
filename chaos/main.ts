import { parseArgs } from 'node:util';
import { findRedisServer, NO_REDIS_SERVER_MESSAGE } from '../shared/redis-server.js';
import { scenarios } from './scenarios/index.js';
import type { Row } from './session.js';
import { formatTable } from './table.js';

/**
 * `npm run chaos [-- --full] [-- --only id,id] [-- --keep-logs]`: runs every fault scenario against
 * a private Redis and real producer/consumer processes, then prints one table. Exit 1 if a row fails.
 */
const { values } = parseArgs({
  options: {
    full: { type: 'boolean', default: false },
    only: { type: 'string' },
    'keep-logs': { type: 'boolean', default: false },
    list: { type: 'boolean', default: false },
  },
});
if (values.list) {
  process.stdout.write(`${scenarios.map((s) => s.id).join('\n')}\n`);
  process.exit(0);
}
const binary = findRedisServer(process.env.PATH ?? '');
if (!binary) {
  process.stderr.write(`chaos: ${NO_REDIS_SERVER_MESSAGE}\n`);
  process.exit(1);
}
const only = values.only?.split(',').map((s) => s.trim());
const unknown = only?.filter((id) => !scenarios.some((s) => s.id === id)) ?? [];
if (unknown.length) {
  process.stderr.write(`chaos: unknown scenario(s) ${unknown.join(', ')}; --list shows them.\n`);
  process.exit(2);
}
const selected = scenarios.filter((s) => !only || only.includes(s.id));
const log = (line: string) => process.stderr.write(`${line}\n`);
const rows: Row[] = [];
const started = Date.now();
for (const sc of selected) {
  const t = Date.now();
  log(`chaos: ${sc.id} (${values.full ? 'full' : 'scaled-down'})...`);
  try {
    const row = await sc.run({ full: values.full, redisBinary: binary, log, keepLogs: values['keep-logs'] });
    rows.push(row);
    log(`chaos: ${sc.id} ${row.pass ? 'passed' : 'FAILED'} in ${((Date.now() - t) / 1000).toFixed(0)} s`);
  } catch (err) {
    rows.push({
      scenario: sc.id,
      jobs: 0,
      faults: '-',
      lost: 0,
      duplicated: 0,
      duplicateStarts: 0,
      joinSeconds: null,
      pass: false,
      notes: [`harness error: ${err instanceof Error ? err.message : String(err)}`],
    });
    log(`chaos: ${sc.id} harness error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
  }
}
process.stdout.write(
  `\n${formatTable(rows)}\n\n${rows.filter((r) => r.pass).length}/${rows.length} rows pass (${values.full ? 'full' : 'scaled-down'} sizes) in ${((Date.now() - started) / 1000).toFixed(0)} s.\n`,
);
process.exitCode = rows.every((r) => r.pass) ? 0 : 1;
