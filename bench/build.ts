import { spawnSync } from 'node:child_process';
import { dirname, join, resolve } from 'node:path';
import { mkdirSync } from 'node:fs';
import { findRedisServer, NO_REDIS_SERVER_MESSAGE } from '../shared/redis-server.js';
import { projectRoot } from '../shared/roles.js';
import { conveyorBuildDir } from './contenders.js';

/** Compiles the conveyor roles (tsconfig.build.json) and the bench-only contenders under dist/bench/. */
export function buildBenchApps(): void {
  const tsc = join(projectRoot, 'node_modules', 'typescript', 'bin', 'tsc');
  const steps = [
    ['-p', 'tsconfig.build.json', '--outDir', conveyorBuildDir],
    ['-p', join('bench', 'tsconfig.contenders.json')],
  ];
  for (const args of steps) {
    const r = spawnSync(process.execPath, [tsc, ...args], { cwd: projectRoot, stdio: 'inherit' });
    if (r.status !== 0) throw new Error(`tsc ${args.join(' ')} failed`);
  }
}

/**
 * The start every bench command shares: its flags (usage on --help, exit 2 with usage on a bad
 * flag), the redis-server binary it needs (exit 1 without one), and the compiled apps. Returns what
 * to run with, or the exit code to end with.
 */
export function prepareBench<T extends { build: boolean }>(
  name: string,
  argv: string[],
  env: NodeJS.ProcessEnv,
  parse: (argv: string[]) => T | null,
  usage: string,
): { opts: T; binary: string } | number {
  let opts: T | null;
  try {
    opts = parse(argv);
  } catch (err) {
    process.stderr.write(`${name}: ${err instanceof Error ? err.message : String(err)}\n\n${usage}\n`);
    return 2;
  }
  if (!opts) {
    process.stdout.write(`${usage}\n`);
    return 0;
  }
  const binary = findRedisServer(env.PATH ?? '');
  if (!binary) {
    process.stderr.write(`${name}: ${NO_REDIS_SERVER_MESSAGE}\n`);
    return 1;
  }
  if (opts.build) buildBenchApps();
  return { opts, binary };
}

/**
 * Where a bench command writes its JSON: `out` when given, else bench/results/<prefix><time>.json.
 * Its folder exists on return.
 */
export function resultsFile(out: string | null | undefined, prefix: string, at = new Date()): string {
  const stamp = at.toISOString().replace(/[:.]/g, '-').slice(0, 19);
  const file = resolve(out ?? join(projectRoot, 'bench', 'results', `${prefix}${stamp}.json`));
  mkdirSync(dirname(file), { recursive: true });
  return file;
}
