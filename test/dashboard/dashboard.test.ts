import type { Redis } from 'ioredis';
import request from 'supertest';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { loadConsumerConfig } from '../../consumers/config.js';
import { startConsumer } from '../../consumers/consumer.js';
import { loadDashboardConfig } from '../../dashboard/config.js';
import { createProducer } from '../../producers/producer.js';
import { ConfigError } from '../../shared/config.js';
import { builtinJobs, JobRegistry } from '../../shared/jobs/index.js';
import { createLogger } from '../../shared/logger.js';
import { jobOptions, openQueue } from '../../shared/queue.js';
import { RunStore } from '../../shared/run/run-store.js';
import { readRunStatus, type RunStatus } from '../../shared/run/status.js';
import type { RowsPage, RunView } from '../../dashboard/run-view.js';
import { exitOf, killLeftovers, spawnRole } from '../helpers/processes.js';
import { connect, dropQueue, pollUntil, redisUrl, testQueue } from '../helpers/redis.js';
import type { LiveUpdate } from '../../dashboard/live-runs.js';
import { makeDashboard, readEvents, type SseEvent, type TestDashboard } from './harness.js';
import { openShardedRun } from '../helpers/sharded-run.js';
import { finishAndReport } from '../helpers/finish-jobs.js';
import { seedBigRun } from '../../bench/dashboard/big-run.js';

const registry = new JobRegistry(builtinJobs);
const retry = jobOptions({ attempts: 1, backoffMs: 0, keepCompleted: 1000, keepFailed: 1000 });
const quiet = createLogger({ level: 'silent', service: 'test' });
const USER = 'ops';
const PASSWORD = 'correct horse battery staple';
const TOKEN = 'tok-0123456789abcdef-secret';
const basic = (user: string, pass: string) => `Basic ${Buffer.from(`${user}:${pass}`).toString('base64')}`;

describe('dashboard', () => {
  let redis: Redis;
  let queue: string;
  let dash: TestDashboard | undefined;
  const open = (env: Record<string, string> = {}) => (dash = makeDashboard(queue, env));

  beforeEach(() => {
    redis = connect();
    queue = testQueue();
  });
  afterEach(async () => {
    const leaked = await killLeftovers();
    await dash?.close();
    dash = undefined;
    await dropQueue(redis, queue);
    redis.disconnect();
    expect(leaked, 'processes left running by the test').toEqual([]);
  });

  /** A run with one registered producer that has put `n` sleep jobs. */
  const runWithJobs = async (runId: string, n: number, ms = 0) => {
    const run = new RunStore(redis, queue, runId);
    await run.create(1);
    await run.registerProducer('p1', { host: 'test-host', pid: 1 }, 10_000);
    const q = openQueue(queue, redis);
    const producer = createProducer({ run, registry, producerId: 'p1', jobOptions: retry });
    await producer.putMany(
      Array.from({ length: n }, (_, i) => ({ type: 'sleep', payload: { value: i, ms } })),
    );
    await producer.flush();
    await q.close();
    return run;
  };

  it('/api/status is readRunStatus for ?run=ID, the latest run by default, 400/404 otherwise', async () => {
    await runWithJobs('older', 1);
    await runWithJobs('newer', 3);
    const { app } = open().dashboard;

    const res = await request(app).get('/api/status?run=older').expect(200);
    const expected = (await readRunStatus(redis, queue, 'older', 10_000)) as RunStatus;
    expect({ ...res.body, observedAt: 0 }).toEqual({ ...expected, observedAt: 0 });

    const latest = await request(app).get('/api/status').expect(200);
    expect(latest.body).toMatchObject({
      runId: 'newer',
      queue,
      join: { state: 'pending', waitingFor: 'producers-running' },
      jobs: { produced: 3, completed: 0, unfinished: 3 },
      producers: {
        expected: 1,
        running: 1,
        list: [{ id: 'p1', host: 'test-host', produced: 3, state: 'running' }],
      },
    });
    expect((await request(app).get('/api/runs').expect(200)).body).toEqual(['newer', 'older']);
    await request(app).get('/api/status?run=nope').expect(404);
    await request(app).get('/api/status?run=a:b').expect(400);
    expect((await request(app).get('/healthz').expect(200)).body).toEqual({ ok: true });
    expect((await request(app).get('/readyz').expect(200)).body).toMatchObject({ ok: true });
    const page = await request(app).get('/').expect(200);
    expect(page.text).toContain('id="depth-chart"');
    expect(page.headers['content-security-policy']).toContain("default-src 'self'");
    await request(app)
      .get('/assets/app.js')
      .expect(200)
      .expect('content-type', /javascript/);
  });

  it("/api/rows pages through a run's producers and consumers, and says what is wrong with a bad request", async () => {
    await seedBigRun(redis, queue, 'big', { producers: 120, consumers: 75 });
    const { app } = open().dashboard;
    const full = (await readRunStatus(redis, queue, 'big', 3_600_000))!;
    type Page = RowsPage<{ id: string }>;
    const rows = async (query: string) =>
      (await request(app).get(`/api/rows?run=big&${query}`).expect(200)).body as Page;
    const page = await rows('table=producers&offset=100&limit=50');
    expect(page).toMatchObject({ offset: 100, total: 120 });
    expect(page.rows.map((p) => p.id)).toEqual(full.producers.list.slice(100).map((p) => p.id));
    const consumers = await rows('table=consumers&offset=50');
    expect(consumers).toMatchObject({ offset: 50, total: 75 });
    expect(consumers.rows).toHaveLength(25);
    const error = async (query: string, status: number) =>
      ((await request(app).get(`/api/rows?${query}`).expect(status)).body as { error: string }).error;
    expect(await error('table=producers', 400)).toMatch(/\?run= must be a run id/);
    expect(await error('run=big&table=jobs', 400)).toMatch(/\?table= must be one of producers, consumers/);
    expect(await error('run=big&table=producers&offset=-1', 400)).toMatch(/\?offset= must be a whole number/);
    expect(await error('run=big&table=producers&limit=201', 400)).toMatch(/\?limit= one from 1 to 200/);
    expect(await error('run=nope&table=producers', 404)).toBe(`no run "nope" on queue "${queue}"`);
  });

  it('SHARDS=3: per-shard queue counts and run numbers beside their sums, and every shard in Bull Board', async () => {
    const {
      run,
      queues: shards,
      producer,
    } = await openShardedRun(redis, queue, 's', 3, {
      jobOptions: retry,
    });
    await producer.putMany(
      Array.from({ length: 7 }, (_, i) => ({ type: 'sleep', payload: { value: i, ms: 0 } })),
    );
    await producer.flush();
    // Shard 1's jobs are finished in the run and the producer is done: shard 1 closes, 0 and 2 wait.
    const onShard1 = await shards[1]!.getWaiting();
    await finishAndReport(
      redis,
      run,
      1,
      onShard1.map((j) => j.id!),
      'completed',
    );
    await producer.done();
    await Promise.all(shards.map((q) => q.close()));
    const names = [0, 1, 2].map((i) => `${queue}#${i}`);

    const d = open({ SHARDS: '3' });
    const { app } = d.dashboard;
    const status = (await request(app).get('/api/status?run=s').expect(200)).body as RunStatus;
    expect(status.jobs).toMatchObject({ produced: 7, completed: 2, unfinished: 5 });
    expect(status.shards).toEqual([
      {
        index: 0,
        name: names[0],
        produced: 3,
        completed: 0,
        failed: 0,
        cancelled: 0,
        unfinished: 3,
        closed: false,
      },
      {
        index: 1,
        name: names[1],
        produced: 2,
        completed: 2,
        failed: 0,
        cancelled: 0,
        unfinished: 0,
        closed: true,
      },
      {
        index: 2,
        name: names[2],
        produced: 2,
        completed: 0,
        failed: 0,
        cancelled: 0,
        unfinished: 2,
        closed: false,
      },
    ]);
    // BullMQ holds shard 1's two jobs as completed and the other five waiting: the queue's view, per shard.
    const depth = (await request(app).get('/api/queue').expect(200)).body as Record<string, unknown>;
    expect(depth).toEqual({
      queue,
      total: { waiting: 5, active: 0, delayed: 0, completed: 2, failed: 0 },
      shards: [3, 0, 2].map((waiting, index) => ({
        index,
        name: names[index],
        waiting,
        active: 0,
        delayed: 0,
        completed: index === 1 ? 2 : 0,
        failed: 0,
      })),
    });
    expect((await request(app).get('/api/info').expect(200)).body).toMatchObject({
      queue,
      shards: names.map((name, index) => ({ index, name })),
    });

    // The live page's event stream: the total for the chart, each shard's counts and waiting history.
    const { url } = await d.listen();
    const update = (await readEvents(`${url}/api/events?run=s`, (e) => e.event === 'update'))
      .data as LiveUpdate;
    expect(update.depth).toMatchObject({ waiting: 5, active: 0, shards: [3, 0, 2] });
    expect(update.shards.map((s) => [s.name, s.waiting])).toEqual([
      [names[0], 3],
      [names[1], 0],
      [names[2], 2],
    ]);
    expect(update.status?.shards.map((s) => s.unfinished)).toEqual([3, 0, 2]);

    // Bull Board lists one queue per shard, each with its own jobs.
    const board = (await request(app).get('/queues/api/queues').expect(200)).body as {
      queues: { name: string; description?: string; counts: Record<string, number> }[];
    };
    const listed = board.queues.map((q) => [q.name, q.counts.waiting, q.description]);
    expect(listed.sort()).toEqual([
      [names[0], 3, `shard 0 of 3 of conveyor queue "${queue}"`],
      [names[1], 0, `shard 1 of 3 of conveyor queue "${queue}"`],
      [names[2], 2, `shard 2 of 3 of conveyor queue "${queue}"`],
    ]);
    const jobs = await request(app)
      .get(`/queues/api/queues?activeQueue=${encodeURIComponent(names[2]!)}&status=waiting&page=1`)
      .expect(200);
    const shown = (jobs.body as { queues: { name: string; jobs: unknown[] }[] }).queues;
    expect(shown.find((q) => q.name === names[2])?.jobs).toHaveLength(2);
  });

  it('/readyz answers 503 when Redis is unreachable', async () => {
    const d = open();
    d.redis.disconnect();
    expect((await request(d.dashboard.app).get('/readyz').expect(503)).body).toMatchObject({ ok: false });
    await request(d.dashboard.app).get('/healthz').expect(200);
  });

  it('SSE: one poller per run pushes an update once a job completes, then the join', async () => {
    const run = await runWithJobs('r', 2, 50);
    const d = open();
    const { url } = await d.listen();
    const isUpdate = (e: SseEvent) => e.event === 'update';
    const status = (e: SseEvent) => (e.data as { status: RunView }).status;

    const first = await readEvents(`${url}/api/events?run=r`, isUpdate);
    expect(status(first).jobs).toMatchObject({ produced: 2, completed: 0 });

    // Two clients of the same run share one poller.
    let pollersWithTwo = 0;
    const consumerRedis = connect();
    const config = loadConsumerConfig({
      REDIS_URL: redisUrl(),
      QUEUE: queue,
      RUN_ID: 'r',
      CONSUMER_ID: 'c1',
      HEARTBEAT_MS: '100',
    });
    let consumer: Awaited<ReturnType<typeof startConsumer>> | undefined;
    try {
      const completed = await readEvents(
        `${url}/api/events?run=r`,
        (e) => isUpdate(e) && status(e).jobs.completed === 2,
        {
          onOpen: async () => {
            await readEvents(`${url}/api/events?run=r`, isUpdate, {
              onOpen: () => {
                pollersWithTwo = d.dashboard.live.pollers;
              },
            });
            consumer = await startConsumer(config, {
              redis: consumerRedis,
              registry,
              log: quiet,
              host: 'test',
              pid: process.pid,
            });
          },
        },
      );
      expect(status(completed).join.state).toBe('pending');
      expect(pollersWithTwo).toBe(1);

      const joined = await readEvents(
        `${url}/api/events?run=r`,
        (e) =>
          isUpdate(e) &&
          status(e).join.state === 'joined' &&
          status(e).consumers.page.rows[0]?.state === 'cancelled',
        { onOpen: async () => void (await run.producerDone('p1')) },
      );
      expect(status(joined).jobs).toMatchObject({ produced: 2, completed: 2, unfinished: 0 });
      expect(status(joined).consumers.page.rows[0]?.cancelledAt).toBeTypeOf('number');
      expect((await consumer!.exited).state).toBe('cancelled');
    } finally {
      await consumer?.stop('test over');
      consumerRedis.disconnect();
    }
  });

  it('basic auth: every page, API and action needs the credentials (401 without or wrong, 200 with)', async () => {
    await runWithJobs('r', 1);
    const d = open({ DASHBOARD_USER: USER, DASHBOARD_PASSWORD: PASSWORD });
    const { url } = await d.listen();
    const routes = [
      '/',
      '/assets/app.js',
      '/queues',
      '/queues/api/queues',
      '/api/status',
      '/api/runs',
      '/api/info',
      '/api/events',
    ];
    const get = (path: string, auth?: string) => {
      const abort = new AbortController();
      return fetch(url + path, { headers: auth ? { authorization: auth } : {}, signal: abort.signal }).then(
        (r) => {
          abort.abort(); // the event stream never ends by itself
          return r.status;
        },
      );
    };
    for (const path of routes) {
      expect(await get(path), `${path} without credentials`).toBe(401);
      expect(await get(path, basic(USER, 'wrong')), `${path} with a wrong password`).toBe(401);
      expect(await get(path, basic('someone', PASSWORD)), `${path} with a wrong user`).toBe(401);
      expect(await get(path, basic(USER, PASSWORD)), `${path} with the credentials`).toBe(200);
    }
    const action = (auth?: string) =>
      fetch(`${url}/api/actions/cancel-run`, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          'x-conveyor-action': '1',
          ...(auth ? { authorization: auth } : {}),
        },
        body: JSON.stringify({ run: 'r' }),
      }).then((r) => r.status);
    expect(await action()).toBe(401);
    expect(await action(basic(USER, 'wrong'))).toBe(401);
    expect(await action(basic(USER, PASSWORD))).toBe(202);
    // Probes stay open; they say nothing about the run.
    expect(await get('/healthz')).toBe(200);
    expect(await get('/readyz')).toBe(200);

    const status = await (
      await fetch(`${url}/api/status`, { headers: { authorization: basic(USER, PASSWORD) } })
    ).text();
    expect(status).not.toContain(PASSWORD);
  });

  it('token auth: bearer header, or the cookie a browser gets from /login', async () => {
    await runWithJobs('r', 1);
    const { app } = open({ DASHBOARD_TOKEN: TOKEN }).dashboard;
    await request(app).get('/api/status').expect(401);
    await request(app).get('/queues').set('authorization', 'Bearer nope').expect(401);
    await request(app).get('/api/status').set('authorization', `Bearer ${TOKEN}`).expect(200);
    const page = await request(app).get('/').set('accept', 'text/html').expect(401);
    expect(page.text).toContain('action="/login"');

    await request(app).post('/login').type('form').send({ token: 'wrong' }).expect(401);
    const login = await request(app).post('/login').type('form').send({ token: TOKEN }).expect(303);
    const cookie = login.headers['set-cookie'] as unknown as string[];
    expect(cookie[0]).toMatch(/HttpOnly/);
    expect(cookie[0]).toMatch(/SameSite=Strict/);
    await request(app).get('/api/status').set('cookie', cookie[0]!.split(';')[0]!).expect(200);
    await request(app).get('/api/status').set('cookie', 'conveyor_token=guess').expect(401);
  });

  it('the session cookie is not the token, expires, and ends with a logout', async () => {
    await runWithJobs('r', 1);
    const { app } = open({ DASHBOARD_TOKEN: TOKEN, DASHBOARD_SESSION_HOURS: '2' }).dashboard;
    const login = await request(app).post('/login').type('form').send({ token: TOKEN }).expect(303);
    const setCookie = (login.headers['set-cookie'] as unknown as string[])[0]!;
    const session = setCookie.split(';')[0]!;
    expect(session).toMatch(/^conveyor_token=/);
    expect(decodeURIComponent(session)).not.toContain(TOKEN);
    expect(setCookie).toMatch(/Max-Age=7200/);
    expect(setCookie).toMatch(/Expires=/);
    // Without a TLS-terminating proxy it trusts, a plain-HTTP dashboard cannot set Secure.
    expect(setCookie).not.toMatch(/Secure/);
    await request(app).get('/api/status').set('cookie', session).expect(200);
    // The raw token is no cookie.
    await request(app).get('/api/status').set('cookie', `conveyor_token=${TOKEN}`).expect(401);

    const logout = await request(app).post('/logout').set('cookie', session).expect(303);
    expect((logout.headers['set-cookie'] as unknown as string[])[0]).toMatch(
      /conveyor_token=;.*Expires=Thu, 01 Jan 1970/,
    );
    // The old cookie is dead even if the browser kept it.
    await request(app).get('/api/status').set('cookie', session).expect(401);
  });

  it('DASHBOARD_TRUST_PROXY: behind a TLS-terminating proxy the session cookie is Secure', async () => {
    const { app } = open({ DASHBOARD_TOKEN: TOKEN, DASHBOARD_TRUST_PROXY: 'loopback' }).dashboard;
    const viaProxy = await request(app)
      .post('/login')
      .set('x-forwarded-proto', 'https')
      .type('form')
      .send({ token: TOKEN })
      .expect(303);
    expect((viaProxy.headers['set-cookie'] as unknown as string[])[0]).toMatch(/; Secure/);
    await dash?.close();
    // Not trusted: the same header from anyone changes nothing.
    const direct = open({ DASHBOARD_TOKEN: TOKEN }).dashboard.app;
    const plain = await request(direct)
      .post('/login')
      .set('x-forwarded-proto', 'https')
      .type('form')
      .send({ token: TOKEN })
      .expect(303);
    expect((plain.headers['set-cookie'] as unknown as string[])[0]).not.toMatch(/Secure/);
  });

  it('hardening headers: a CSP on every page (Bull Board too), no X-Powered-By, no-store JSON, no stray page', async () => {
    await runWithJobs('r', 1);
    const { app } = open({ DASHBOARD_USER: USER, DASHBOARD_PASSWORD: PASSWORD }).dashboard;
    const auth = basic(USER, PASSWORD);
    const get = (path: string) => request(app).get(path).set('authorization', auth);
    for (const path of [
      '/',
      '/queues',
      '/queues/api/queues',
      '/api/status',
      '/api/info',
      '/login-required',
    ]) {
      const res = await get(path);
      expect(res.headers['x-powered-by'], path).toBeUndefined();
      expect(res.headers['content-security-policy'], path).toContain("frame-ancestors 'none'");
      expect(res.headers['content-security-policy'], path).toContain("script-src 'self'");
      expect(res.headers['x-content-type-options'], path).toBe('nosniff');
    }
    for (const path of ['/api/status', '/api/runs', '/queues/api/queues', '/'])
      expect((await get(path)).headers['cache-control'], path).toBe('no-store');
    // The live page exists once, at /, with its CSP: not again as an asset.
    await get('/assets/index.html').expect(404);
    const asset = await get('/assets/app.js').expect(200);
    expect(asset.headers['cache-control']).toBe('private, no-cache');
    const board = await get('/queues');
    expect(board.headers['content-security-policy']).not.toContain("script-src 'self' 'unsafe-inline'");
  });

  it('config: secrets are hidden, an unauthenticated dashboard binds to loopback only', () => {
    expect(loadDashboardConfig({}).host).toBe('127.0.0.1');
    // Credentials alone do not publish it: serving other machines is a choice of its own.
    expect(loadDashboardConfig({ DASHBOARD_TOKEN: TOKEN }).host).toBe('127.0.0.1');
    expect(loadDashboardConfig({ DASHBOARD_TOKEN: TOKEN, DASHBOARD_HOST: '0.0.0.0' }).host).toBe('0.0.0.0');
    const problems = (env: Record<string, string>) => {
      try {
        loadDashboardConfig(env);
      } catch (err) {
        if (err instanceof ConfigError) return err.problems.join('\n');
      }
      return '';
    };
    expect(problems({ DASHBOARD_HOST: '0.0.0.0' })).toMatch(/^DASHBOARD_HOST: .*set DASHBOARD_USER/);
    expect(problems({ DASHBOARD_PASSWORD: 'hunter2-secret' })).toMatch(/^DASHBOARD_USER: required/);
    // A password needs a token's strength.
    const weak = problems({ DASHBOARD_USER: 'ops', DASHBOARD_PASSWORD: 'a' });
    expect(weak).toMatch(/^DASHBOARD_PASSWORD: must be at least 16 characters/);
    expect(problems({ DASHBOARD_USER: 'ops', DASHBOARD_PASSWORD: 'fifteen-chars-x' })).toMatch(
      /^DASHBOARD_PASSWORD: must be at least 16/,
    );
    expect(problems({ DASHBOARD_USER: 'ops', DASHBOARD_PASSWORD: 'sixteen-chars-xx' })).toBe('');
    expect(problems({ DASHBOARD_TOKEN: 'short-secret', DASHBOARD_PORT: 'x' })).not.toContain('short-secret');
    expect(problems({ DASHBOARD_PORT: '70000' })).toMatch(/^DASHBOARD_PORT: must be at most 65535/);
    expect(problems({ DASHBOARD_HOSTS: 'dash.example.com:3000' })).toMatch(/^DASHBOARD_HOSTS: .*port/);
    expect(problems({ DASHBOARD_HOSTS: '.com' })).toMatch(/^DASHBOARD_HOSTS: .*top-level/);
    expect(problems({ DASHBOARD_HOSTS: '*' })).toMatch(/^DASHBOARD_HOSTS: "\*" is not a host name/);
    expect(problems({ DASHBOARD_TRUST_PROXY: 'true' })).toMatch(
      /^DASHBOARD_TRUST_PROXY: .*number of proxies/,
    );
    expect(problems({ DASHBOARD_TRUST_PROXY: '10.0.0.0/33' })).toMatch(
      /^DASHBOARD_TRUST_PROXY: "10.0.0.0\/33"/,
    );
    expect(problems({ DASHBOARD_TRUST_PROXY: '1' })).toBe('');
    expect(problems({ DASHBOARD_TRUST_PROXY: 'loopback, 10.0.0.0/8, fd00::1' })).toBe('');
    expect(problems({ DASHBOARD_SESSION_HOURS: '0' })).toMatch(
      /^DASHBOARD_SESSION_HOURS: must be at least 1/,
    );
  });

  it('read-only: Bull Board refuses writes and the cancel actions are off', async () => {
    await runWithJobs('r', 1);
    const ro = open({ DASHBOARD_READONLY: 'true' }).dashboard.app;
    await request(ro).put(`/queues/api/queues/${queue}/retry/failed`).expect(405);
    await request(ro).put(`/queues/api/queues/${queue}/pause`).expect(405);
    await request(ro)
      .post('/api/actions/cancel-run')
      .set('x-conveyor-action', '1')
      .send({ run: 'r' })
      .expect(403);
    expect((await request(ro).get('/api/info').expect(200)).body).toMatchObject({
      readOnly: true,
      actions: false,
    });
    expect(await new RunStore(redis, queue, 'r').cancelledAt()).toBeNull();
    await dash?.close();

    // The same writes go through when the board is not read-only.
    const rw = open().dashboard.app;
    await request(rw).put(`/queues/api/queues/${queue}/retry/failed`).expect(200);
  });

  it('actions refuse cross-site requests, requests without the action header, and big bodies', async () => {
    await runWithJobs('r', 1);
    const { app } = open({ DASHBOARD_HOSTS: 'dash.local' }).dashboard;
    const cancel = () => request(app).post('/api/actions/cancel-run').set('host', 'dash.local:3000');
    await cancel()
      .set('x-conveyor-action', '1')
      .set('origin', 'https://evil.example')
      .send({ run: 'r' })
      .expect(403);
    await cancel()
      .set('x-conveyor-action', '1')
      .set('referer', 'https://evil.example/page')
      .send({ run: 'r' })
      .expect(403);
    await cancel().set('x-conveyor-action', '1').set('origin', 'null').send({ run: 'r' }).expect(403);
    await cancel().set('origin', 'http://dash.local:3000').send({ run: 'r' }).expect(403); // no action header
    // A form post is what a cross-site page could send without a preflight: refused.
    await cancel().type('form').send('run=r').expect(403);
    await cancel()
      .set('x-conveyor-action', '1')
      .send({ run: 'r', reason: 'x'.repeat(10_000) })
      .expect(413);
    // Bull Board's own writes get the same origin check.
    await request(app)
      .put(`/queues/api/queues/${queue}/pause`)
      .set('origin', 'https://evil.example')
      .expect(403);
    expect(await new RunStore(redis, queue, 'r').cancelledAt()).toBeNull();

    await cancel()
      .set('x-conveyor-action', '1')
      .set('origin', 'http://dash.local:3000')
      .send({ run: 'r' })
      .expect(202);
    expect(await new RunStore(redis, queue, 'r').cancelledAt()).not.toBeNull();
    await request(app)
      .post('/api/actions/cancel-consumer')
      .set('x-conveyor-action', '1')
      .send({ run: 'r', consumer: 'ghost' })
      .expect(404);
    await request(app)
      .post('/api/actions/cancel-run')
      .set('x-conveyor-action', '1')
      .send({ run: 'ghost' })
      .expect(404);
  });

  it('answers only for the hosts it serves: any other Host is refused before every handler, Bull Board included (DNS rebinding)', async () => {
    await runWithJobs('r', 1);
    const { app } = open().dashboard;
    // After a rebinding, the attacker's page is same-origin with the dashboard under the attacker's name.
    const as = (host: string) => ({ host, origin: `http://${host}` });
    for (const path of [
      '/',
      '/api/status',
      '/api/runs',
      '/queues',
      '/queues/api/queues',
      '/assets/app.js',
      '/healthz',
      '/metrics',
    ])
      await request(app).get(path).set(as('attacker.test:3311')).expect(403);
    const refused = await request(app)
      .post('/api/actions/cancel-run')
      .set(as('attacker.test:3311'))
      .set('x-conveyor-action', '1')
      .send({ run: 'r' })
      .expect(403);
    expect(refused.text).toContain('DASHBOARD_HOSTS');
    await request(app).put(`/queues/api/queues/${queue}/pause`).set(as('attacker.test:3311')).expect(403);
    expect(await new RunStore(redis, queue, 'r').cancelledAt()).toBeNull();
    expect(await openQueue(queue, redis).isPaused()).toBe(false);
    // No Host, or a malformed one, is refused too.
    await request(app).get('/api/status').set('host', 'a b').expect(403);

    // Loopback names and IP addresses (which no rebinding can produce) are served.
    for (const host of ['localhost:3311', '127.0.0.1:3311', '[::1]:3311', 'ops.localhost', '10.1.2.3:8080'])
      await request(app).get('/api/status').set(as(host)).expect(200);

    await dash?.close();
    const named = open({ DASHBOARD_HOSTS: 'dash.example.com, .corp.example' }).dashboard.app;
    for (const host of ['dash.example.com', 'DASH.example.com:443', 'corp.example', 'a.b.corp.example:80'])
      await request(named).get('/api/status').set(as(host)).expect(200);
    for (const host of ['example.com', 'dash.example.com.attacker.test', 'notcorp.example'])
      await request(named).get('/api/status').set(as(host)).expect(403);
  });

  it('cancel one consumer, then the run: real consumer processes stop and exit 0 as cancelled', async () => {
    const run = new RunStore(redis, queue, 'r');
    await run.create(1);
    const env = { REDIS_URL: redisUrl(), QUEUE: queue, RUN_ID: 'r', HEARTBEAT_MS: '200' };
    const c1 = spawnRole('consumer', { ...env, CONSUMER_ID: 'c1' }, { label: 'c1' });
    const c2 = spawnRole('consumer', { ...env, CONSUMER_ID: 'c2' }, { label: 'c2' });
    await Promise.all([c1.waitFor('consumer ready'), c2.waitFor('consumer ready')]);
    const { app } = open().dashboard;
    const post = (path: string, body: object) =>
      request(app).post(`/api/actions/${path}`).set('x-conveyor-action', '1').send(body);

    await post('cancel-consumer', { run: 'r', consumer: 'c1', reason: 'scaling down' }).expect(202);
    expect((await exitOf(c1, 15_000)).code).toBe(0);
    const after = (await request(app).get('/api/status?run=r').expect(200)).body as RunStatus;
    expect(after.consumers.find((c) => c.id === 'c1')).toMatchObject({
      state: 'cancelled',
      cancelReason: 'scaling down',
    });
    expect(after.consumers.find((c) => c.id === 'c2')?.state).toMatch(/^(idle|busy)$/);
    expect(after.join.state).toBe('pending');

    await post('cancel-run', { run: 'r' }).expect(202);
    expect((await exitOf(c2, 15_000)).code).toBe(0);
    const states = await pollUntil('both consumers to be recorded cancelled', async () => {
      const s = await readRunStatus(redis, queue, 'r', 10_000);
      const all = s?.consumers.map((c) => c.state) ?? [];
      return all.length === 2 && all.every((x) => x === 'cancelled') ? all : undefined;
    });
    expect(states).toEqual(['cancelled', 'cancelled']);
  });

  it("cancel one job: the live page lists the run's waiting jobs, a cancel removes one, and the action obeys the same rules", async () => {
    const q = openQueue(queue, redis);
    const run = new RunStore(redis, queue, 'r');
    await run.create(1);
    await run.registerProducer('p1', { host: 'test', pid: 1 }, 10_000);
    const producer = createProducer({
      run,
      registry: new JobRegistry(builtinJobs),
      producerId: 'p1',
      jobOptions: jobOptions({ attempts: 1, backoffMs: 0, keepCompleted: 10, keepFailed: 10 }),
    });
    const [a, b] = await producer.putMany([
      { type: 'sleep', payload: { value: 1, ms: 0 } },
      { type: 'sleep', payload: { value: 2, ms: 0 } },
    ]);
    await producer.flush();
    const d = open();
    const { url } = await d.listen();
    const update = (await readEvents(`${url}/api/events?run=r`, (e) => e.event === 'update'))
      .data as LiveUpdate;
    expect(update.waitingJobs.sort()).toEqual([a, b].sort());
    const post = (body: object) =>
      request(d.dashboard.app).post('/api/actions/cancel-job').set('x-conveyor-action', '1').send(body);
    await request(d.dashboard.app).post('/api/actions/cancel-job').send({ run: 'r', job: a }).expect(403);
    expect((await post({ run: 'r', job: a }).expect(202)).body).toMatchObject({ outcome: 'removed' });
    expect(await q.getJob(a!)).toBeUndefined();
    await post({ run: 'r', job: 'r+1+nobody+9' }).expect(404);
    await post({ run: 'r', job: 'bad id!' }).expect(400);
    expect((await readRunStatus(redis, queue, 'r', 10_000))?.jobs.cancelled).toBe(1);
    await q.close();
  });

  it('npm run dashboard: bad config exits 2 naming the variable; SIGTERM closes streams and exits 0', async () => {
    const bad = spawnRole('dashboard', {
      REDIS_URL: redisUrl(),
      QUEUE: queue,
      DASHBOARD_PORT: 'eighty',
      DASHBOARD_PASSWORD: 'pw-secret-1',
    });
    expect((await exitOf(bad)).code).toBe(2);
    expect(bad.output()).toContain('DASHBOARD_PORT');
    expect(bad.output()).not.toContain('pw-secret-1');

    const env = { REDIS_URL: redisUrl(), QUEUE: queue, DASHBOARD_PORT: '0', DASHBOARD_TOKEN: TOKEN };
    const dashboard = spawnRole('dashboard', env, { label: 'dashboard' });
    await dashboard.waitFor(/dashboard: http:\/\/\S+:\d+/);
    const port = /dashboard: http:\/\/\S+:(\d+)/.exec(dashboard.output())![1];
    const url = `http://127.0.0.1:${port}`;
    await pollUntil('readyz', async () => ((await fetch(`${url}/readyz`)).status === 200 ? true : undefined));
    // An open event stream must not hold the shutdown up.
    await readEvents(`${url}/api/events`, (e) => e.event === 'update', {
      headers: { authorization: `Bearer ${TOKEN}` },
      timeoutMs: 30_000,
    });
    let opened!: () => void;
    const isOpen = new Promise<void>((r) => (opened = r));
    const streaming = readEvents(`${url}/api/events`, () => false, {
      headers: { authorization: `Bearer ${TOKEN}` },
      timeoutMs: 30_000,
      onOpen: () => opened(),
    }).then(
      () => 'matched',
      (err: Error) => err.message,
    );
    await isOpen;
    dashboard.child.kill('SIGTERM');
    expect((await exitOf(dashboard, 15_000)).code).toBe(0);
    expect(await streaming).toMatch(/ended|terminated/i);
    expect(dashboard.output()).not.toContain(TOKEN);
    expect(dashboard.output()).toContain('dashboard stopped');
  });
});
