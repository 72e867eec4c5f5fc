import { parseArgs, type ParseArgsConfig } from 'node:util';

/** One command's flags and words, as `conveyor <name> --help` prints them. */
export type CommandSpec = {
  name: string;
  /** One line: what the command does. */
  summary: string;
  /** The command line after `conveyor <name>`, e.g. `[--run ID] [--json]`. */
  synopsis: string;
  /** Flags besides --help, with a line of help each. */
  options: Record<string, { type: 'string' | 'boolean'; help: string; short?: string }>;
  allowPositionals?: boolean;
  /** The environment variables it reads, with a line each (the same as `npm run <name>`). */
  env: readonly string[];
};

export type ParsedArgs =
  | { kind: 'run'; values: Record<string, string | boolean | undefined>; positionals: string[] }
  | { kind: 'help'; text: string }
  | { kind: 'usage-error'; message: string };

/** The full `--help` text of a command. */
export function helpText(spec: CommandSpec): string {
  const flags = Object.entries(spec.options).map(
    ([name, o]) => `  --${name}${o.type === 'string' ? ' VALUE' : ''}`.padEnd(24) + o.help,
  );
  return [
    `Usage: conveyor ${spec.name} ${spec.synopsis}`.trimEnd(),
    '',
    spec.summary,
    '',
    'Options:',
    ...flags,
    '  --help'.padEnd(24) + 'show this help',
    '',
    'Environment:',
    ...spec.env.map((line) => `  ${line}`),
    '',
  ].join('\n');
}

/**
 * node:util's parseArgs, with its errors turned into one line a person can act on instead of a stack
 * trace, and `--help` answered before anything starts.
 */
export function parseCommandArgs(spec: CommandSpec, args: readonly string[]): ParsedArgs {
  const options: ParseArgsConfig['options'] = { help: { type: 'boolean', short: 'h' } };
  for (const [name, o] of Object.entries(spec.options))
    options[name] = o.short ? { type: o.type, short: o.short } : { type: o.type };
  let parsed;
  try {
    parsed = parseArgs({
      args: [...args],
      options,
      allowPositionals: spec.allowPositionals ?? false,
      strict: true,
    });
  } catch (err) {
    const raw = err instanceof Error ? err.message : String(err);
    // parseArgs explains itself in a sentence, sometimes followed by advice for programmers: keep the first.
    const first = raw.split('\n')[0]!.replace(/\. To specify a positional argument.*$/, '');
    const hint = settingHint(spec, /^Unknown option '--([\w-]+)'/.exec(first)?.[1], args);
    return {
      kind: 'usage-error',
      message:
        `conveyor ${spec.name}: ${first.replace(/\.$/, '')}.${hint} Usage: conveyor ${spec.name} ${spec.synopsis}`.trimEnd() +
        ` (see conveyor ${spec.name} --help)`,
    };
  }
  if (parsed.values.help) return { kind: 'help', text: helpText(spec) };
  return {
    kind: 'run',
    values: parsed.values as Record<string, string | boolean | undefined>,
    positionals: parsed.positionals,
  };
}

/**
 * For a `main.ts`: parse `argv` (the arguments after the command's name), print help (exit 0) or a usage error (exit 2), else return what was parsed.
 * Returns null when the process should stop; `exitCode` is then set.
 */
export function commandArgsOrExit(
  spec: CommandSpec,
  argv: readonly string[],
  proc: Pick<NodeJS.Process, 'stdout' | 'stderr' | 'exitCode'>,
): { values: Record<string, string | boolean | undefined>; positionals: string[] } | null {
  const parsed = parseCommandArgs(spec, argv);
  if (parsed.kind === 'help') {
    proc.stdout.write(parsed.text);
    proc.exitCode = 0;
    return null;
  }
  if (parsed.kind === 'usage-error') {
    proc.stderr.write(`${parsed.message}\n`);
    proc.exitCode = 2;
    return null;
  }
  return parsed;
}

/**
 * For an unknown `--some-setting`: settings are environment variables, so name the one it means
 * (`SOME_SETTING=4 conveyor consumer`) when the command reads it, or say where settings go.
 */
function settingHint(spec: CommandSpec, flag: string | undefined, args: readonly string[]): string {
  if (flag === undefined) return '';
  const variable = flag.replace(/-/g, '_').toUpperCase();
  if (!spec.env.some((line) => new RegExp(`(^|[ ,+])${variable}([ ,:=+]|$)`).test(line)))
    return ` Settings are environment variables, not flags (conveyor ${spec.name} --help lists them).`;
  const at = args.findIndex((a) => a === `--${flag}` || a.startsWith(`--${flag}=`));
  const given = args[at]?.includes('=') ? args[at].split('=').slice(1).join('=') : args[at + 1];
  const value = given !== undefined && !given.startsWith('-') ? given : '...';
  return ` Settings are environment variables: ${variable}=${value} conveyor ${spec.name}.`;
}

/** The candidate a mistyped word most likely meant (at most two edits away), or null. */
export function closestWord(word: string, candidates: readonly string[]): string | null {
  let best: { name: string; distance: number } | null = null;
  for (const name of candidates) {
    const distance = editDistance(word.toLowerCase(), name);
    if (distance <= 2 && (!best || distance < best.distance)) best = { name, distance };
  }
  return best?.name ?? null;
}

function editDistance(a: string, b: string): number {
  let row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const next = [i];
    for (let j = 1; j <= b.length; j++)
      next[j] = Math.min(row[j]! + 1, next[j - 1]! + 1, row[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    row = next;
  }
  return row[b.length]!;
}
