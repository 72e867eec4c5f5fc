import { execFileSync, spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bullKeyPrefix, putJobId } from '../../shared/keys.js';
import { freePort } from '../../shared/redis-server.js';
import { projectRoot } from '../../shared/roles.js';
import { readRunStatus } from '../../shared/run/status.js';
import { FAST } from '../helpers/demo.js';
import { exitOf, spawnRole, spawnTracked } from '../helpers/processes.js';
import { redisUrl } from '../helpers/redis.js';
import { useTestQueue } from '../helpers/test-queue.js';

/** A plain JavaScript job type, written outside the repository as a user would. */
const SHOUT_JS = `import { defineJob, z } from 'conveyor';

export const shout = defineJob({
  name: 'shout',
  schema: z.strictObject({ text: z.string() }),
  handler: async ({ text }) => text.toUpperCase(),
});
`;

/** Waits for the run's join from another process, through the library. */
const JOIN_MJS = `import { openRun } from 'conveyor';

const run = openRun({ redisUrl: process.env.REDIS_URL, queue: process.env.QUEUE, runId: process.env.RUN_ID });
console.log('waiting for the join');
// Started before the producers that create the run: wait for them as long as for the join.
const status = await run.join({ timeoutMs: 60_000, existGraceMs: 60_000 });
console.log('joined', JSON.stringify(status.jobs));
await run.close();
`;

/**
 * The gather: slow(x) for x in [3, 1, 2, 6, 4], the first cancelled before it starts and the
 * third failing; prints the run's results() and what stream() yielded, as JSON.
 */
const GATHER_MJS = `import { openProducer, openRun, startConsumer, defineJob, UnrecoverableError, z } from 'conveyor';

const slow = defineJob({
  name: 'slow',
  schema: z.strictObject({ x: z.number() }),
  handler: async ({ x }) => {
    if (x === 2) throw new UnrecoverableError('two is not allowed');
    return x * 10;
  },
});
const where = { redisUrl: process.env.REDIS_URL, queue: process.env.QUEUE, runId: 'slots' };
const producer = await openProducer({ ...where, jobs: [slow], collectResults: true });
const ids = await producer.putMany([3, 1, 2, 6, 4].map((x) => ({ type: 'slow', payload: { x } })));
await producer.done();
const run = openRun(where);
await run.cancelJob(ids[0]);
const consumer = await startConsumer({ ...where, jobs: [slow], concurrency: 2 });
const streamed = [];
for await (const r of run.stream({ pollMs: 50 })) streamed.push(r.jobId);
const results = await run.results();
console.log(JSON.stringify({ ids, streamed, results }));
await run.close();
await consumer.exited;
`;

const run = (cmd: string, args: string[], cwd: string) =>
  execFileSync(cmd, args, { cwd, encoding: 'utf8', env: { ...process.env, CI: 'true' }, stdio: 'pipe' });

/**
 * What a user does: `npm pack`, `npm install ./conveyor-*.tgz` into an empty folder, `npx conveyor
 * demo`, then their own job types (plain JavaScript, and the README's TypeScript example with tsx
 * installed) through `npx conveyor producer` / `npx conveyor consumer`, joined.
 */
describe('the packed package, installed into an empty folder', () => {
  const ctx = useTestQueue();
  let dir: string;
  let app: string;
  let files: string[];
  let http: Server;
  let imageUrl: string;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'conveyor-pack-'));
    // `npm pack` builds first (prepack); the install takes dependencies from npm's cache when it can.
    const packed = run('npm', ['pack', '--silent', '--pack-destination', dir], projectRoot)
      .trim()
      .split('\n')
      .pop()!;
    files = run('tar', ['-tzf', join(dir, packed)], dir)
      .trim()
      .split('\n');
    app = join(dir, 'my-app');
    mkdirSync(join(app, 'jobs'), { recursive: true });
    writeFileSync(
      join(app, 'package.json'),
      JSON.stringify({ name: 'my-app', private: true, type: 'module' }),
    );
    const tsx = (
      JSON.parse(readFileSync(join(projectRoot, 'package.json'), 'utf8')) as {
        devDependencies: Record<string, string>;
      }
    ).devDependencies.tsx!;
    run('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', `../${packed}`, `tsx@${tsx}`], app);
    writeFileSync(join(app, 'jobs', 'shout.js'), SHOUT_JS);
    copyFileSync(join(projectRoot, 'examples', 'jobs', 'resize.ts'), join(app, 'jobs', 'resize.ts'));
    copyFileSync(join(projectRoot, 'examples', 'app.ts'), join(app, 'app.ts'));
    writeFileSync(join(app, 'join.mjs'), JOIN_MJS);
    writeFileSync(join(app, 'gather.mjs'), GATHER_MJS);
    http = createServer((req, res) => {
      if (req.url === '/missing.png') res.writeHead(404).end('no such image');
      else res.writeHead(200, { 'content-type': 'image/png' }).end(Buffer.alloc(1234));
    });
    await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve));
    imageUrl = `http://127.0.0.1:${(http.address() as AddressInfo).port}/cat.png`;
  }, 150_000);
  afterAll(async () => {
    await new Promise((resolve) => http?.close(resolve));
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('holds compiled JavaScript with declarations, the conveyor command, the dashboard page, and no tests', () => {
    expect(files).toEqual(
      expect.arrayContaining([
        'package/dist/index.js',
        'package/dist/index.d.ts',
        'package/dist/cli/main.js',
        'package/dashboard/public/index.html',
        // what --help and the README point to
        'package/docs/reference.md',
        'package/docs/operations.md',
      ]),
    );
    expect(files.filter((f) => /^package\/(dist\/)?(test|bench|chaos|examples)\//.test(f))).toEqual([]);
    expect(files.filter((f) => f.endsWith('.ts') && !f.endsWith('.d.ts'))).toEqual([]);
  });

  it("the README's examples are the files under examples/, as printed", () => {
    const readme = readFileSync(join(projectRoot, 'README.md'), 'utf8');
    for (const file of ['examples/jobs/resize.ts', 'examples/app.ts'])
      expect(readme, file).toContain(`\`\`\`ts\n${readFileSync(join(projectRoot, file), 'utf8')}\`\`\`\n`);
  });

  it('the README examples type-check against the installed package', () => {
    writeFileSync(
      join(app, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: {
          target: 'ES2022',
          module: 'NodeNext',
          moduleResolution: 'NodeNext',
          strict: true,
          noEmit: true,
          typeRoots: [join(projectRoot, 'node_modules', '@types')],
          types: ['node'],
        },
        include: ['jobs/*.ts', 'app.ts'],
      }),
    );
    const tsc = spawnSync(
      process.execPath,
      [join(projectRoot, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', '.'],
      {
        cwd: app,
        encoding: 'utf8',
      },
    );
    expect(tsc.status, tsc.stdout + tsc.stderr).toBe(0);
  }, 60_000);

  it('npx conveyor: --help, and an unknown flag is one line of usage with exit 2', () => {
    const help = spawnSync('npx', ['conveyor', 'producer', '--help'], { cwd: app, encoding: 'utf8' });
    expect(help.status).toBe(0);
    expect(help.stdout).toMatch(/^Usage: conveyor producer/);
    const bad = spawnSync('npx', ['conveyor', 'status', '--nope'], { cwd: app, encoding: 'utf8' });
    expect(bad.status).toBe(2);
    expect(bad.stderr.trim().split('\n')).toEqual([
      expect.stringMatching(/^conveyor status: Unknown option '--nope'/),
    ]);
  });

  it('on a terminal, logs readable lines with what the package installs (no pino-pretty); status gives up on a closed port', async () => {
    const closed = await freePort();
    // `script` gives the command a pseudo-terminal, as `docker run -it` or a person's shell does.
    const tty = spawnSync('script', ['-qec', 'npx conveyor status', '/dev/null'], {
      cwd: app,
      encoding: 'utf8',
      env: { ...process.env, REDIS_URL: `redis://127.0.0.1:${closed}` },
      timeout: 30_000,
    });
    expect(tty.stdout).not.toContain('pino-pretty');
    expect(tty.stdout).toContain(`status: no answer from Redis at redis://127.0.0.1:${closed} within 5 s`);
    expect(tty.status).toBe(1);
    // A producer's logs on a terminal are readable lines, with what the installed package has.
    const producer = spawnSync('script', ['-qec', 'npx conveyor producer', '/dev/null'], {
      cwd: app,
      encoding: 'utf8',
      env: { ...process.env, ...FAST, REDIS_URL: redisUrl(), QUEUE: ctx.queue, JOBS: '1', JOB_MS: '0' },
      timeout: 30_000,
    });
    expect(producer.status, producer.stdout).toBe(0);
    expect(producer.stdout).toMatch(/\d\d:\d\d:\d\d\.\d{3}\S* \S*INFO .*producer starting/);
    expect(producer.stdout).not.toContain('"level"');
  }, 60_000);

  it('npx conveyor demo joins (private Redis, dashboard from the package)', async () => {
    const demo = spawnTracked(
      'npx conveyor demo',
      'npx',
      ['conveyor', 'demo'],
      {
        ...FAST,
        PRODUCERS: '2',
        CONSUMERS: '1',
        JOBS: '3',
        JOB_MS: '10',
        PRODUCE_INTERVAL_MS: '0',
        DASHBOARD_PORT: '0',
      },
      { cwd: app },
    );
    expect((await exitOf(demo, 60_000)).code, demo.output()).toBe(0);
    expect(demo.stdout()).toMatch(/Dashboard: http:\/\/127\.0\.0\.1:\d+/);
    expect(demo.stdout()).toMatch(/run demo-\d+ joined at/);
    expect(demo.stdout()).toContain('jobs: produced 6, completed 6, failed 0');
  }, 90_000);

  it('examples/app.ts runs with tsx: a consumer, a producer and the join in one process', async () => {
    const p = spawnTracked(
      'npx tsx app.ts',
      'npx',
      ['tsx', 'app.ts', imageUrl],
      { REDIS_URL: redisUrl(), QUEUE: ctx.queue },
      { cwd: app },
    );
    expect((await exitOf(p, 60_000)).code, p.output()).toBe(0);
    expect(p.stdout()).toMatch(/^resize-\d+ joined: 1 completed, 0 failed$/m);
  }, 70_000);

  it('results() keeps one slot per put with its outcome, and stream() yields every put, through the installed package', async () => {
    const p = spawnTracked(
      'gather.mjs',
      process.execPath,
      ['gather.mjs'],
      { REDIS_URL: redisUrl(), QUEUE: ctx.queue },
      { cwd: app },
    );
    expect((await exitOf(p, 60_000)).code, p.output()).toBe(0);
    const { ids, streamed, results } = JSON.parse(p.stdout().trim().split('\n').pop()!) as {
      ids: string[];
      streamed: string[];
      results: { jobId: string; outcome: string; value?: unknown; error?: string }[];
    };
    expect(
      results.map(({ jobId, outcome, value, error }) => [jobId, outcome, value ?? error ?? null]),
    ).toEqual([
      [ids[0], 'cancelled', null],
      [ids[1], 'completed', 10],
      [ids[2], 'failed', 'two is not allowed'],
      [ids[3], 'completed', 60],
      [ids[4], 'completed', 40],
    ]);
    expect([...streamed].sort()).toEqual([...ids].sort());
  }, 70_000);

  it("the image's way: a job module placed inside the project folder runs with the compiled roles", async () => {
    // What `-v "$PWD/jobs:/app/jobs"` or `COPY jobs /app/jobs` does: 'conveyor' resolves to the package itself.
    const jobs = join(projectRoot, 'test', 'artifacts', `mounted-${ctx.queue}`);
    mkdirSync(jobs, { recursive: true });
    writeFileSync(join(jobs, 'shout.js'), SHOUT_JS);
    try {
      const env = {
        ...FAST,
        REDIS_URL: redisUrl(),
        QUEUE: ctx.queue,
        RUN_ID: 'mounted',
        JOB_MODULES: join(jobs, 'shout.js'),
      };
      const consumer = spawnRole('consumer', env, { compiled: true });
      const producer = spawnRole(
        'producer',
        { ...env, JOB_TYPE: 'shout', JOB_PAYLOAD: '{"text":"mounted"}', JOBS: '2', PRODUCE_INTERVAL_MS: '0' },
        { compiled: true },
      );
      expect((await exitOf(producer)).code, producer.output()).toBe(0);
      expect((await exitOf(consumer)).code, consumer.output()).toBe(0);
      const status = await readRunStatus(ctx.redis, ctx.queue, 'mounted', 3_000);
      expect(status?.jobs).toMatchObject({ produced: 2, completed: 2, failed: 0 });
    } finally {
      rmSync(jobs, { recursive: true, force: true });
    }
  });

  it('a job module in a CommonJS folder, or with a syntax error, stops the consumer saying why and where', async () => {
    // What `npm init -y` makes: a CommonJS package; and a TypeScript module with a stray comma.
    mkdirSync(join(app, 'cjs'), { recursive: true });
    writeFileSync(join(app, 'cjs', 'package.json'), JSON.stringify({ name: 'cjs', type: 'commonjs' }));
    writeFileSync(join(app, 'cjs', 'slow.ts'), SHOUT_JS);
    writeFileSync(
      join(app, 'jobs', 'broken.ts'),
      SHOUT_JS.replace('text.toUpperCase()', 'text.toUpperCase(,)'),
    );
    for (const [module, message] of [
      [
        './cjs/slow.ts',
        /is loaded as CommonJS because cjs\/package\.json has "type": "commonjs", and conveyor is an ES module package: set "type": "module"/,
      ],
      ['./jobs/broken.ts', /syntax error in jobs\/broken\.ts at line 6, column \d+:/],
    ] as const) {
      const consumer = spawnTracked(
        'npx conveyor consumer',
        'npx',
        ['conveyor', 'consumer'],
        { REDIS_URL: redisUrl(), QUEUE: ctx.queue, JOB_MODULES: module },
        { cwd: app },
      );
      expect((await exitOf(consumer)).code, consumer.output()).toBe(2);
      expect(consumer.output()).toMatch(message);
    }
  });

  it("the user's own job types (JavaScript, and TypeScript with tsx) through npx conveyor producer/consumer, joined", async () => {
    const env = {
      ...FAST,
      REDIS_URL: redisUrl(),
      QUEUE: ctx.queue,
      RUN_ID: 'mine',
      JOB_MODULES: './jobs/shout.js,./jobs/resize.ts',
    };
    const joiner = spawnTracked('join.mjs', process.execPath, ['join.mjs'], env, { cwd: app });
    await joiner.waitFor('waiting for the join');
    const consumer = spawnTracked(
      'npx conveyor consumer',
      'npx',
      ['conveyor', 'consumer'],
      { ...env, CONCURRENCY: '2' },
      { cwd: app },
    );
    const producers = [
      spawnTracked(
        'npx conveyor producer (shout)',
        'npx',
        ['conveyor', 'producer'],
        {
          ...env,
          PRODUCERS: '2',
          PRODUCER_ID: 'p-shout',
          JOB_TYPE: 'shout',
          JOB_PAYLOAD: '{"text":"hello"}',
          JOBS: '3',
          PRODUCE_INTERVAL_MS: '0',
        },
        { cwd: app },
      ),
      spawnTracked(
        'npx conveyor producer (resize)',
        'npx',
        ['conveyor', 'producer'],
        {
          ...env,
          PRODUCERS: '2',
          PRODUCER_ID: 'p-resize',
          JOB_TYPE: 'resize',
          JOB_PAYLOAD: JSON.stringify({ url: imageUrl, width: 100 }),
          JOBS: '2',
          PRODUCE_INTERVAL_MS: '0',
        },
        { cwd: app },
      ),
    ];
    for (const p of producers) expect((await exitOf(p, 60_000)).code, p.output()).toBe(0);
    expect((await exitOf(joiner, 60_000)).code, joiner.output()).toBe(0);
    expect(joiner.stdout()).toMatch(/joined \{"produced":5,"completed":5,"failed":0/);
    expect((await exitOf(consumer, 30_000)).code, consumer.output()).toBe(0);
    const status = await readRunStatus(ctx.redis, ctx.queue, 'mine', 3_000);
    expect(status?.join.state).toBe('joined');
    const prefix = bullKeyPrefix(ctx.queue);
    const jobKey = (producer: string) => prefix + putJobId(status!.idPrefix!, producer, 0);
    expect(JSON.parse((await ctx.redis.hget(jobKey('p-shout'), 'returnvalue')) ?? 'null')).toBe('HELLO');
    expect(JSON.parse((await ctx.redis.hget(jobKey('p-resize'), 'returnvalue')) ?? 'null')).toEqual({
      url: imageUrl,
      width: 100,
      bytes: 1234,
    });
  }, 120_000);
});
