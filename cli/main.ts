#!/usr/bin/env node
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { closestWord } from '../shared/args.js';
import { commands, type CommandName } from '../shared/commands.js';
import { projectRoot } from '../shared/roles.js';

/** The module each subcommand runs; each parses its own flags (so `npm run <name> -- --help` works too). */
const entries: Record<CommandName, string> = {
  demo: '../scripts/demo/main',
  producer: '../producers/main',
  consumer: '../consumers/main',
  dashboard: '../dashboard/main',
  status: '../scripts/status/main',
  gather: '../scripts/gather/main',
  cancel: '../scripts/cancel/main',
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
  // Compiled (.js) or run from source under tsx (.ts): the subcommand's module has the same extension.
  const ext = import.meta.url.endsWith('.ts') ? '.ts' : '.js';
  process.argv = [process.argv[0]!, process.argv[1]!, ...rest];
  await import(new URL(`${entries[command as CommandName]}${ext}`, import.meta.url).href);
}
