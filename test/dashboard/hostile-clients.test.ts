import { describe, expect, it } from 'vitest';
import { seedBigRun } from '../../bench/dashboard/big-run.js';
import { dropRequest, openStalledStream, type StalledStream } from '../../bench/dashboard/stalled-stream.js';
import { RunStore } from '../../shared/run/run-store.js';
import { rssMb } from '../../bench/proc.js';
import { dashboardUrlOf, exitOf, spawnRole } from '../helpers/processes.js';
import { scrape, value } from '../helpers/prometheus-text.js';
import { connect, pollUntil, redisServerBinary, redisUrl } from '../helpers/redis.js';
import { startRedisServer } from '../../shared/redis-server.js';
import { useTestQueue } from '../helpers/test-queue.js';
import { makeDashboard, readEvents } from './harness.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The dashboard process against clients that misbehave: its memory and Redis's work stay bounded. */
describe('dashboard under hostile clients', () => {
  const ctx = useTestQueue();

  it("event streams that never read: the dashboard's memory stays flat", async () => {
    // Updates carry a page of each table, so they are big when the first consumers hold many jobs:
    // 1,000 producers and 150 consumers, every third holding 1,000 jobs, make an update of some 500 KB
    // (pushed every 100 ms or so) while the run's whole status stays small enough to read cheaply.
    await seedBigRun(ctx.redis, ctx.queue, 'big', { producers: 1_000, consumers: 150, held: 1_000 });
    const dashboard = spawnRole('dashboard', {
      REDIS_URL: redisUrl(),
      QUEUE: ctx.queue,
      RUN_ID: 'big',
      DASHBOARD_PORT: '0',
      DASHBOARD_POLL_MS: '100',
      LOG_LEVEL: 'warn',
    });
    const base = await dashboardUrlOf(dashboard);
    await pollUntil('the dashboard to reach Redis', async () =>
      (await fetch(`${base}/readyz`)).status === 200 ? true : undefined,
    );
    const pid = dashboard.child.pid!;
    const streams: StalledStream[] = [];
    try {
      // Warm up: one reader gets a few updates, so what follows measures only the stalled clients.
      const reader = await fetch(`${base}/api/events?run=big`);
      const chunks = reader.body!.getReader();
      for (let got = 0; got < 2_000_000;)
        got += ((await chunks.read()).value as Uint8Array | undefined)?.length ?? 0;
      await chunks.cancel();
      const before = rssMb(pid)!;
      for (let i = 0; i < 8; i++) streams.push(await openStalledStream(base, '/api/events?run=big'));
      let peak = before;
      for (let s = 0; s < 10; s++) {
        await sleep(1_000);
        peak = Math.max(peak, rssMb(pid)!);
      }
      // Before backpressure, the same 10 s took it up by 200-250 MB; now it moves by what garbage collection
      // leaves (20-40 MB), the stalled clients holding one update each at most.
      expect(peak - before, `RSS ${before.toFixed(0)} → peak ${peak.toFixed(0)} MB`).toBeLessThan(80);
      const metrics = await scrape(`${base}/metrics`);
      expect(value(metrics, 'conveyor_dashboard_stream_updates_skipped_total', {})).toBeGreaterThan(0);
      expect(value(metrics, 'conveyor_dashboard_stream_clients', {})).toBe(8);
    } finally {
      for (const s of streams) s.close();
      dashboard.child.kill('SIGTERM');
      expect((await exitOf(dashboard)).code).toBe(0);
    }
  });

  it('a client that stops reading is skipped, then dropped; a client that reads keeps getting updates', async () => {
    await seedBigRun(ctx.redis, ctx.queue, 'big', { producers: 500, consumers: 500, held: 250 });
    const dash = makeDashboard(ctx.queue, { RUN_ID: 'big' }, { stallMs: 1_000 });
    ctx.cleanups.push(() => dash.close());
    const { url } = await dash.listen();
    const { live } = dash.dashboard;
    const stalled = await openStalledStream(url, '/api/events?run=big');
    ctx.cleanups.push(() => Promise.resolve(stalled.close()));
    let updates = 0;
    // Reads until the stalled client is gone, then two more updates.
    let dropSeenAt = -1;
    await readEvents(
      `${url}/api/events?run=big`,
      (e) => {
        if (e.event !== 'update') return false;
        updates++;
        if (dropSeenAt < 0 && live.counts.dropped === 1) dropSeenAt = updates;
        return dropSeenAt > 0 && updates >= dropSeenAt + 2;
      },
      { timeoutMs: 30_000 },
    );
    expect(live.counts.skipped).toBeGreaterThan(0);
    expect(live.counts.dropped).toBe(1);
  });

  it('a flood of ?run= values costs Redis a bounded amount: no poller for a run that does not exist, a capped few for runs that do', async () => {
    // A Redis of its own: it counts every command it runs, and the suite's Redis also serves the
    // test files running beside this one.
    const server = await startRedisServer({ binary: redisServerBinary() });
    const redis = connect(server.url);
    for (let i = 0; i < 30; i++) await new RunStore(redis, ctx.queue, `small-${i}`).create(1);
    const dashboard = spawnRole('dashboard', {
      REDIS_URL: server.url,
      QUEUE: ctx.queue,
      DASHBOARD_PORT: '0',
      DASHBOARD_POLL_MS: '100',
      LOG_LEVEL: 'warn',
    });
    try {
      const base = await dashboardUrlOf(dashboard);
      await pollUntil('the dashboard to reach Redis', async () =>
        (await fetch(`${base}/readyz`)).status === 200 ? true : undefined,
      );
      const missing = await fetch(`${base}/api/events?run=no-such-run`);
      expect(missing.status).toBe(404);
      expect(await missing.json()).toMatchObject({ error: expect.stringContaining('no-such-run') as string });
      // Commands Redis runs per second while nothing else talks to it: the dashboard's polling.
      const opsPerS = async (ms: number) => {
        const count = async () =>
          Number(/total_commands_processed:(\d+)/.exec(await redis.info('stats'))?.[1]);
        const c0 = await count();
        await sleep(ms);
        return ((await count()) - c0 - 1) / (ms / 1000);
      };
      const idle = await opsPerS(2_000);
      const flood = async (id: (i: number) => string) => {
        for (let from = 0; from < 400; from += 100)
          await Promise.all(
            Array.from({ length: 100 }, (_, i) => dropRequest(base, `/api/events?run=${id(from + i)}`)),
          );
      };
      // Ids of no run: each one costs one existence check, then nothing.
      await flood((i) => `flood-${i}`);
      const afterMissing = await opsPerS(3_000);
      // Ids of 30 existing runs, each asked for and left at once: pollers are capped, and idle ones do not poll.
      await flood((i) => `small-${i % 30}`);
      const afterExisting = await opsPerS(3_000);
      // Before: one poller per id for 30 s, some 10 commands each per poll (30-40k commands/s here).
      const figures = `idle ${idle}/s, after missing ids ${afterMissing}/s, after existing ids ${afterExisting}/s`;
      expect(afterMissing, figures).toBeLessThan(idle + 50);
      expect(afterExisting, figures).toBeLessThan(idle + 50);
      const metrics = await scrape(`${base}/metrics`);
      expect(value(metrics, 'conveyor_dashboard_watched_runs', {})).toBeLessThanOrEqual(20);
    } finally {
      dashboard.child.kill('SIGTERM');
      expect((await exitOf(dashboard)).code).toBe(0);
      redis.disconnect();
      await server.stop();
    }
  });

  it('wrong passwords are slowed and logged: after five, the client waits before any password is checked', async () => {
    const password = 'correct horse battery staple';
    const dashboard = spawnRole('dashboard', {
      REDIS_URL: redisUrl(),
      QUEUE: ctx.queue,
      DASHBOARD_PORT: '0',
      DASHBOARD_USER: 'ops',
      DASHBOARD_PASSWORD: password,
      LOG_LEVEL: 'info',
    });
    try {
      const base = await dashboardUrlOf(dashboard);
      const get = async (pass: string) => {
        const auth = `Basic ${Buffer.from(`ops:${pass}`).toString('base64')}`;
        const res = await fetch(`${base}/api/info`, { headers: { authorization: auth } });
        await res.arrayBuffer();
        return { status: res.status, retryAfter: Number(res.headers.get('retry-after')) };
      };
      expect((await get(password)).status).toBe(200);
      for (let i = 1; i <= 5; i++) expect((await get(`guess-${i}-SECRET`)).status, `guess ${i}`).toBe(401);
      // Locked for a second: not even the right password is checked (else guessing would go on at full speed).
      const locked = await get(password);
      expect(locked).toEqual({ status: 429, retryAfter: 1 });
      expect((await get('guess-6-SECRET')).status).toBe(429);
      await sleep(1_100);
      expect((await get('guess-7-SECRET')).status).toBe(401);
      // Each further failure doubles the wait.
      expect(await get(password)).toEqual({ status: 429, retryAfter: 2 });
      await sleep(2_100);
      expect((await get(password)).status).toBe(200);
      // A success starts the count again.
      expect((await get('guess-8-SECRET')).status).toBe(401);
      const failures = () =>
        dashboard
          .output()
          .split('\n')
          .filter((l) => l.includes('dashboard login failed'));
      // Seven failures were checked: five, the one after the first wait, the one after the success.
      const lines = await pollUntil('seven failures logged', async () =>
        Promise.resolve(failures().length === 7 ? failures() : undefined),
      );
      expect(lines[0]).toMatch(/"ip":"127\.0\.0\.1"/);
      expect(lines.join('\n')).not.toMatch(/SECRET|horse/);
    } finally {
      dashboard.child.kill('SIGTERM');
      expect((await exitOf(dashboard)).code).toBe(0);
    }
  });
});
