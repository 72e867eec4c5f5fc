import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { Redis } from 'ioredis';
import { findRedisServer, NO_REDIS_SERVER_MESSAGE, startRedisServer } from '../shared/redis-server.js';
import { projectRoot, roleCommand } from '../shared/roles.js';
import { RunStore } from '../shared/run/run-store.js';
import { resultsFile } from './build.js';
import { seedBigRun } from './dashboard/big-run.js';
import { launchChromium, measurePage, type PageFigures } from './dashboard/browser-figures.js';
import { dropRequest, openStalledStream } from './dashboard/stalled-stream.js';
import { cpuMs, killAll, rssMb, sleep, spawnChild, within } from './proc.js';

const USAGE = `Usage: npm run bench:dashboard -- [options]

The dashboard under a run of many processes and hostile clients, against a dashboard process on
loopback (basic auth on). Prints and saves: the size of /api/status; Redis commands/s and dashboard
CPU when idle; the dashboard's memory while stalled clients hold event streams open without reading;
Redis commands/s and CPU after a flood of ?run= requests; wrong passwords answered per second; and
in Chromium, the first render, long tasks and input delay of the live page.

  --producers N     producers in the run (default 5000)
  --consumers N     consumers in the run (default 5000)
  --stalled N       event streams that never read (default 5)
  --stall-s N       how long they stay open, seconds (default 30)
  --flood N         ?run= requests dropped at once (default 2000)
  --watch-s N       how long Chromium watches the page, seconds (default 15)
  --no-browser      skip the Chromium figures
  --redis URL       use this Redis (loopback) instead of starting one
  --out FILE        JSON output (default bench/results/dashboard-<time>.json)
  -h, --help`;

const USER = 'bench';
const PASSWORD = 'bench-password-0123456789';
const AUTH = `Basic ${Buffer.from(`${USER}:${PASSWORD}`).toString('base64')}`;

/** Commands Redis processed per second over `ms`, and the dashboard's CPU (% of one core) meanwhile. */
async function costOver(
  redis: Redis,
  pid: number,
  ms: number,
): Promise<{ redisOpsPerS: number; cpuPct: number }> {
  const commands = async () =>
    Number(/total_commands_processed:(\d+)/.exec(await redis.info('stats'))?.[1] ?? NaN);
  const [c0, t0, cpu0] = [await commands(), Date.now(), cpuMs(pid) ?? 0];
  await sleep(ms);
  const [c1, t1, cpu1] = [await commands(), Date.now(), cpuMs(pid) ?? 0];
  const s = (t1 - t0) / 1000;
  return {
    redisOpsPerS: Math.round((c1 - c0 - 1) / s),
    cpuPct: Math.round(((cpu1 - cpu0) / (t1 - t0)) * 100),
  };
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      producers: { type: 'string', default: '5000' },
      consumers: { type: 'string', default: '5000' },
      stalled: { type: 'string', default: '5' },
      'stall-s': { type: 'string', default: '30' },
      flood: { type: 'string', default: '2000' },
      'watch-s': { type: 'string', default: '15' },
      'no-browser': { type: 'boolean', default: false },
      redis: { type: 'string' },
      out: { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) {
    console.log(USAGE);
    return;
  }
  const n = (flag: keyof typeof values, min: number) => {
    const v = Number(values[flag]);
    if (!Number.isInteger(v) || v < min) throw new Error(`--${flag}: a whole number of at least ${min}`);
    return v;
  };
  const producers = n('producers', 1);
  const consumers = n('consumers', 0);
  const stalled = n('stalled', 0);
  const stallS = n('stall-s', 1);
  const flood = n('flood', 0);
  const watchS = n('watch-s', 1);
  if (values.redis && !/^rediss?:\/\/(127\.0\.0\.1|localhost|\[::1\])[:/]/.test(values.redis))
    throw new Error('--redis: only a Redis on this machine (127.0.0.1, localhost or [::1]) may be used.');

  let server: Awaited<ReturnType<typeof startRedisServer>> | undefined;
  if (!values.redis) {
    const binary = findRedisServer(process.env.PATH ?? '');
    if (!binary) throw new Error(NO_REDIS_SERVER_MESSAGE);
    server = await startRedisServer({ binary });
  }
  const url = values.redis ?? server!.url;
  const redis = new Redis(url, { maxRetriesPerRequest: null });
  const queue = `bench-dashboard-${Date.now()}`;
  const runId = 'big';
  const profile = mkdtempSync(join(tmpdir(), 'conveyor-bench-chromium-'));
  const log = (line: string) => process.stdout.write(`${line}\n`);
  const results: Record<string, unknown> = { producers, consumers, stalled, stallS, flood };
  try {
    log(`seeding run "${runId}": ${producers} producers, ${consumers} consumers ...`);
    await seedBigRun(redis, queue, runId, { producers, consumers });
    // Small runs to flood with later: ids that exist.
    for (let i = 0; i < 50; i++) await new RunStore(redis, queue, `small-${i}`).create(1);

    const { command, args } = roleCommand('dashboard', false);
    const dashboard = spawnChild(
      'dashboard',
      command,
      args,
      {
        REDIS_URL: url,
        QUEUE: queue,
        RUN_ID: runId,
        DASHBOARD_PORT: '0',
        DASHBOARD_HOST: '127.0.0.1',
        DASHBOARD_USER: USER,
        DASHBOARD_PASSWORD: PASSWORD,
        LOG_LEVEL: 'warn',
      },
      projectRoot,
    );
    const base = await within(
      'the dashboard to start',
      30_000,
      new Promise<string>((resolve) =>
        createInterface({ input: dashboard.child.stdout! }).on('line', (l) => {
          const m = /^dashboard: (http:\/\/\S+)$/.exec(l);
          if (m) resolve(m[1]!.replace('localhost', '127.0.0.1'));
        }),
      ),
    );
    const get = (path: string) => fetch(`${base}${path}`, { headers: { authorization: AUTH } });
    await within(
      'the dashboard to reach Redis',
      30_000,
      (async () => {
        while ((await get('/readyz')).status !== 200) await sleep(100);
      })(),
    );
    const status = await (await get(`/api/status?run=${runId}`)).arrayBuffer();
    results.statusBytes = status.byteLength;
    log(`/api/status?run=${runId}: ${(status.byteLength / 1e6).toFixed(2)} MB`);
    await sleep(3_000);
    results.idle = await costOver(redis, dashboard.pid, 10_000);
    log(`idle, no page open: ${JSON.stringify(results.idle)}`);

    // Stalled clients: streams opened and never read.
    if (stalled > 0) {
      const rssBefore = rssMb(dashboard.pid) ?? 0;
      const streams = await Promise.all(
        Array.from({ length: stalled }, () =>
          openStalledStream(base, `/api/events?run=${runId}`, { Authorization: AUTH }),
        ),
      );
      const samples: number[] = [];
      for (let s = 0; s < stallS; s++) {
        await sleep(1_000);
        samples.push(Math.round(rssMb(dashboard.pid) ?? 0));
      }
      const peak = Math.max(...samples);
      for (const st of streams) st.close();
      await sleep(10_000);
      results.stalled = {
        streams: stalled,
        seconds: stallS,
        rssBeforeMb: Math.round(rssBefore),
        rssPeakMb: peak,
        rssEndMb: samples.at(-1),
        rss10sAfterCloseMb: Math.round(rssMb(dashboard.pid) ?? 0),
        rssEverySecondMb: samples,
      };
      log(
        `stalled streams: ${JSON.stringify({ ...(results.stalled as object), rssEverySecondMb: undefined })}`,
      );
    }

    // A flood of ?run= requests, dropped at once: ids of no run, then ids of existing small runs.
    if (flood > 0) {
      const floodResults: Record<string, unknown> = (results.flood = {});
      for (const [label, id] of [
        ['missing', (i: number) => `flood-${i}`],
        ['existing', (i: number) => `small-${i % 50}`],
      ] as const) {
        await sleep(35_000); // outlast any linger from before
        const before = await costOver(redis, dashboard.pid, 3_000);
        for (let from = 0; from < flood; from += 250)
          await Promise.all(
            Array.from({ length: Math.min(250, flood - from) }, (_, i) =>
              dropRequest(base, `/api/events?run=${id(from + i)}`, { Authorization: AUTH }),
            ),
          );
        const after = await costOver(redis, dashboard.pid, 10_000);
        floodResults[label] = { requests: flood, before, next10s: after };
        log(
          `flood of ${flood} ?run= (${label}): before ${JSON.stringify(before)}, next 10 s ${JSON.stringify(after)}`,
        );
      }
    }

    // Wrong passwords, 50 at a time, for 5 s.
    {
      const wrong = `Basic ${Buffer.from(`${USER}:not-the-password`).toString('base64')}`;
      const codes = new Map<number, number>();
      const t0 = Date.now();
      await Promise.all(
        Array.from({ length: 50 }, async () => {
          while (Date.now() - t0 < 5_000) {
            const r = await fetch(`${base}/api/info`, { headers: { authorization: wrong } });
            await r.arrayBuffer();
            codes.set(r.status, (codes.get(r.status) ?? 0) + 1);
          }
        }),
      );
      const total = [...codes.values()].reduce((a, b) => a + b, 0);
      results.wrongPasswords = {
        perS: Math.round(total / ((Date.now() - t0) / 1000)),
        statuses: Object.fromEntries(codes),
      };
      log(`wrong passwords: ${JSON.stringify(results.wrongPasswords)}`);
    }

    if (!values['no-browser']) {
      await sleep(35_000);
      const browser = await launchChromium(profile, {
        httpCredentials: { username: USER, password: PASSWORD },
      });
      try {
        const cost = costOver(redis, dashboard.pid, watchS * 1000);
        const figures: PageFigures = await measurePage(browser, `${base}/?run=${runId}`, {
          watchMs: watchS * 1000,
          renderTimeoutMs: 180_000,
        });
        results.browser = { ...figures, oneTabOpen: await cost };
        log(`Chromium: ${JSON.stringify(results.browser)}`);
      } finally {
        await browser.close();
      }
    }
    dashboard.child.kill('SIGTERM');
    await within('the dashboard to stop', 15_000, dashboard.exit);
  } finally {
    await killAll();
    rmSync(profile, { recursive: true, force: true });
    const keys = await redis.keys(`*${queue}*`);
    for (let i = 0; i < keys.length; i += 1_000) await redis.del(...keys.slice(i, i + 1_000));
    redis.disconnect();
    await server?.stop();
  }
  const file = resultsFile(values.out, 'dashboard-');
  writeFileSync(file, `${JSON.stringify({ at: new Date().toISOString(), ...results }, null, 2)}\n`);
  log(`saved ${file}`);
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : err);
  process.exitCode = 1;
});
