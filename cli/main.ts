#!/usr/bin/env node
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { main as consumer } from '../consumers/main.js';
import { main as dashboard } from '../dashboard/main.js';
import { main as producer } from '../producers/main.js';
import { main as cancel } from '../scripts/cancel/main.js';
import { main as demo } from '../scripts/demo/main.js';
import { main as gather } from '../scripts/gather/main.js';
import { main as status } from '../scripts/status/main.js';
import { closestWord } from '../shared/args.js';
import { commands, type CommandName } from '../shared/commands.js';
import type { Env } from '../shared/config.js';
import { projectRoot } from '../shared/roles.js';

/** Each subcommand's main; each parses its own flags (so `npm run <name> -- --help` works too). */
const entries: Record<CommandName, (argv: readonly string[], env: Env) => Promise<void>> = {
  demo,
  producer,
  consumer,
  dashboard,
  status,
  gather,
  cancel,
};

function usage(): string {
  const names = Object.values(commands).map(
    (c) => `  ${c.name.padEnd(10)} ${c.summary.split('. ')[0]!.replace(/\.$/, '')}`,
  );
  return [
    'Usage: conveyor <command> [options]   (conveyor <command> --help for its options and environment)',
    '',
    'Commands:',
    ...names,
    '',
  ].join('\n');
}

const [command, ...rest] = process.argv.slice(2);
if (command === undefined || command === '--help' || command === '-h' || command === 'help') {
  process.stdout.write(usage());
  process.exitCode = command === undefined ? 2 : 0;
} else if (command === '--version' || command === '-v') {
  const pkg = JSON.parse(readFileSync(join(projectRoot, 'package.json'), 'utf8')) as {
    version: string;
  };
  process.stdout.write(`${pkg.version}\n`);
} else if (!Object.hasOwn(entries, command)) {
  const meant = closestWord(command, Object.keys(entries));
  process.stderr.write(
    `conveyor: unknown command "${command}".${meant ? ` Did you mean "${meant}"?` : ''} Commands: ${Object.keys(entries).join(', ')} (see conveyor --help)\n`,
  );
  process.exitCode = 2;
} else {
  await entries[command as CommandName](rest, process.env);
}
