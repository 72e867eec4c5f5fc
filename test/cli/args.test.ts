import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { parseCommandArgs } from '../../shared/args.js';
import { commands } from '../../shared/commands.js';
import { projectRoot } from '../../shared/roles.js';
import { RunStore } from '../../shared/run/run-store.js';
import { exitOf, spawnTracked } from '../helpers/processes.js';
import { redisUrl } from '../helpers/redis.js';
import { useTestQueue } from '../helpers/test-queue.js';

const script = (path: string, args: string[], env: Record<string, string> = {}) =>
  spawnTracked(path, process.execPath, ['--import', 'tsx', `${projectRoot}/${path}`, ...args], env);

describe('command-line flags', () => {
  it('a usage error is one line naming the command and its usage', () => {
    for (const args of [['--nope'], ['--run'], ['extra']]) {
      const parsed = parseCommandArgs(commands.status, args);
      expect(parsed.kind).toBe('usage-error');
      if (parsed.kind !== 'usage-error') continue;
      expect(parsed.message.split('\n')).toHaveLength(1);
      expect(parsed.message).toMatch(
        /^conveyor status: .+ Usage: conveyor status \[--run ID \| --list\] \[--results\] \[--json\]/,
      );
    }
    expect(parseCommandArgs(commands.gather, ['7'])).toMatchObject({ kind: 'run', positionals: ['7'] });
    expect(parseCommandArgs(commands.producer, ['--help'])).toMatchObject({ kind: 'help' });
  });

  it('an unknown flag that is a setting names its environment variable; a mistyped command gets a suggestion', async () => {
    const message = (args: string[]) => {
      const parsed = parseCommandArgs(commands.consumer, args);
      return parsed.kind === 'usage-error' ? parsed.message : '';
    };
    expect(message(['--concurrency', '4'])).toContain(
      "Unknown option '--concurrency'. Settings are environment variables: CONCURRENCY=4 conveyor consumer.",
    );
    expect(message(['--job-modules=./jobs/a.js'])).toContain('JOB_MODULES=./jobs/a.js conveyor consumer');
    expect(message(['--colour'])).toContain('Settings are environment variables, not flags');
    const p = script('cli/main.ts', ['producr']);
    expect((await exitOf(p)).code).toBe(2);
    expect(p.output()).toContain('conveyor: unknown command "producr". Did you mean "producer"?');
    const far = script('cli/main.ts', ['frobnicate']);
    expect((await exitOf(far)).code).toBe(2);
    expect(far.output()).not.toContain('Did you mean');
  });

  it('npm run producer -- --help prints help and starts no producer', async () => {
    const p = script('producers/main.ts', ['--help'], { REDIS_URL: 'redis://127.0.0.1:1' });
    expect((await exitOf(p)).code).toBe(0);
    expect(p.stdout()).toMatch(/^Usage: conveyor producer/);
    for (const variable of ['PRODUCER_ID', 'COLLECT_RESULTS', 'ON_JOIN_TYPE', 'JOBS_FILE'])
      expect(p.stdout()).toMatch(new RegExp(`^  ${variable} `, 'm'));
    expect(p.output()).not.toContain('producer starting');
  });

  it('status: a bare --run is a usage error, exit 2, no stack trace', async () => {
    const p = script('scripts/status/main.ts', ['--run']);
    expect((await exitOf(p)).code).toBe(2);
    expect(p.output().trim().split('\n')).toEqual([
      expect.stringMatching(/^conveyor status: Option '--run <value>' argument missing/),
    ]);
  });
});

describe('logs in a terminal', () => {
  const ctx = useTestQueue();

  it('a producer on a terminal writes readable lines, not JSON (no development package needed)', () => {
    // `script` gives the command a pseudo-terminal, as a person's shell does.
    const command = `${process.execPath} --import tsx ${projectRoot}/producers/main.ts`;
    const tty = spawnSync('script', ['-qec', command, '/dev/null'], {
      cwd: projectRoot,
      encoding: 'utf8',
      env: {
        PATH: process.env.PATH,
        REDIS_URL: redisUrl(),
        QUEUE: ctx.queue,
        JOBS: '1',
        JOB_MS: '0',
        PRODUCE_INTERVAL_MS: '0',
        METRICS_PORT: '0',
      },
      timeout: 30_000,
    });
    expect(tty.status, tty.stdout).toBe(0);
    expect(tty.stdout).toMatch(
      /^\S*\d\d:\d\d:\d\d\.\d{3}\S* \S*INFO \S* \S*producer\S* {2}producer starting/m,
    );
    expect(tty.stdout).not.toContain('"level"');
  }, 40_000);
});

describe('the conveyor command', () => {
  it('imports its commands as functions: importing one runs nothing', async () => {
    const before = process.exitCode;
    const modules = await Promise.all([
      import('../../producers/main.js'),
      import('../../consumers/main.js'),
      import('../../dashboard/main.js'),
      import('../../scripts/status/main.js'),
      import('../../scripts/gather/main.js'),
      import('../../scripts/cancel/main.js'),
      import('../../scripts/demo/main.js'),
    ]);
    expect(modules.map((m) => typeof m.main)).toEqual(Array(7).fill('function'));
    expect(process.exitCode).toBe(before);
  });

  it('runs a subcommand with the arguments after its name', async () => {
    const p = script('cli/main.ts', ['status', '--run']);
    expect((await exitOf(p)).code).toBe(2);
    expect(p.output().trim().split('\n')).toEqual([
      expect.stringMatching(/^conveyor status: Option '--run <value>' argument missing/),
    ]);
  });
});

describe('status --list', () => {
  const ctx = useTestQueue();

  it('shows each run with its state, counts and times', async () => {
    await new RunStore(ctx.redis, ctx.queue, 'older').create(2);
    await new RunStore(ctx.redis, ctx.queue, 'newer').create(1);
    const p = script('scripts/status/main.ts', ['--list'], { REDIS_URL: redisUrl(), QUEUE: ctx.queue });
    expect((await exitOf(p)).code, p.output()).toBe(0);
    const lines = p.stdout().trim().split('\n');
    expect(lines[0]).toMatch(
      /^RUN\s+STATE\s+PROD\/DONE\/FAIL\/OPEN\s+PRODUCERS\s+CREATED \(UTC\)\s+JOINED \(UTC\)\s+TOOK$/,
    );
    const row = (id: string) => lines.find((l) => l.startsWith(`${id} `));
    expect(lines).toHaveLength(3);
    expect(row('newer')).toMatch(
      /^newer\s+pending \(producers-missing\)\s+0\/0\/0\/0\s+0\/1\s+\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$/,
    );
    expect(row('older')).toMatch(/^older\s+pending \(producers-missing\)\s+0\/0\/0\/0\s+0\/2\s+\d{4}-/);
  });
});
