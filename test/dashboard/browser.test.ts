import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { Redis } from 'ioredis';
import { chromium, type BrowserContext } from 'playwright-core';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { projectRoot } from '../../shared/roles.js';
import { RunStore } from '../../shared/run/run-store.js';
import { exitOf, killLeftovers, spawnRole } from '../helpers/processes.js';
import { connect, dropQueue, pollUntil, redisUrl, testQueue } from '../helpers/redis.js';
import { makeDashboard, type TestDashboard } from './harness.js';
import { openShardedRun } from '../helpers/sharded-run.js';
import { finishAndReport } from '../helpers/finish-jobs.js';
import { seedBigRun } from '../../bench/dashboard/big-run.js';
import { readRunStatus } from '../../shared/run/status.js';
import { readEvents } from './harness.js';
import { QUEUE_METRICS_HINT } from '../../dashboard/board-messages.js';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const artifacts = resolve(projectRoot, 'test', 'artifacts');

/** Chromium as CI runs it: headless, as root, no network chatter, a throwaway profile. */
async function launchChromium(profile: string, extraArgs: string[] = []): Promise<BrowserContext> {
  if (!existsSync(CHROMIUM)) {
    throw new Error(
      `The dashboard browser test needs Chromium at ${CHROMIUM}. Install it with ` +
        "`apt-get update && apt-get install -y chromium` (CI's .ci/run does this), or set CHROMIUM_PATH.",
    );
  }
  // A persistent context is how Playwright takes a fresh --user-data-dir.
  return chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    viewport: { width: 1280, height: 900 },
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--no-first-run',
      '--disable-quic',
      ...extraArgs,
    ],
  });
}

describe('dashboard in a real browser', () => {
  let redis: Redis;
  let queue: string;
  let dash: TestDashboard | undefined;
  let browser: BrowserContext | undefined;
  let profile: string;

  beforeEach(() => {
    redis = connect();
    queue = testQueue();
    profile = mkdtempSync(join(tmpdir(), 'conveyor-chromium-'));
  });
  afterEach(async () => {
    await browser?.close();
    browser = undefined;
    const leaked = await killLeftovers();
    await dash?.close();
    dash = undefined;
    await dropQueue(redis, queue);
    redis.disconnect();
    rmSync(profile, { recursive: true, force: true });
    expect(leaked, 'processes left running by the test').toEqual([]);
  });

  it('shows the depth chart moving, the join, and every consumer cancelled', async () => {
    browser = await launchChromium(profile);
    await new RunStore(redis, queue, 'r').create(2);
    dash = makeDashboard(queue, { DASHBOARD_POLL_MS: '200' }, { queueEvents: true });
    await dash.queueEventsReady?.();
    const { url } = await dash.listen();

    const page = await browser.newPage();
    const problems: string[] = [];
    page.on('pageerror', (err) => problems.push(err.message));
    page.on('console', (msg) => {
      if (msg.type() === 'error') problems.push(msg.text());
    });
    // Nothing may come from outside this dashboard: the page must work offline.
    const foreign: string[] = [];
    page.on('request', (req) => {
      if (!req.url().startsWith(url)) foreign.push(req.url());
    });
    await page.goto(url);
    await page.waitForSelector('#conn[data-state="live"]');
    // Polled from here through Playwright's queries: a string predicate would need eval, which the page's CSP forbids.
    const points = async () => Number(await page.getAttribute('#depth-chart', 'data-points'));
    await pollUntil('the chart to get data points', async () => ((await points()) >= 2 ? true : undefined));
    const pointsBefore = await points();

    const env = {
      REDIS_URL: redisUrl(),
      QUEUE: queue,
      RUN_ID: 'r',
      PRODUCERS: '2',
      JOBS: '6',
      PRODUCE_INTERVAL_MS: '100',
      JOB_MS: '400',
      HEARTBEAT_MS: '200',
      LOG_LEVEL: 'warn',
    };
    const procs = [
      spawnRole('consumer', { ...env, CONSUMER_ID: 'c1' }, { label: 'c1' }),
      spawnRole('consumer', { ...env, CONSUMER_ID: 'c2' }, { label: 'c2' }),
      spawnRole('producer', { ...env, PRODUCER_ID: 'p1' }, { label: 'p1' }),
      spawnRole('producer', { ...env, PRODUCER_ID: 'p2' }, { label: 'p2' }),
    ];

    // Mid-run: consumers busy, the join waits for producers (jobs of 400 ms, so a loaded machine still sees it).
    await page.waitForSelector('#consumers tbody tr[data-state="busy"]', { timeout: 30_000 });
    mkdirSync(artifacts, { recursive: true });
    await page.screenshot({ path: join(artifacts, 'dashboard-running.png') });

    // The chart keeps moving and shows the jobs that waited.
    await pollUntil('the chart to move', async () =>
      (await points()) > pointsBefore + 5 ? true : undefined,
    );
    await page.waitForSelector('#join-state[data-state="joined"]', { timeout: 45_000 });
    const joinText = await page.textContent('#join-state');
    expect(joinText).toMatch(/^joined at \d\d:\d\d:\d\d \(all 2 producers done, 0 unfinished\)$/);
    await pollUntil('every consumer to show cancelled', async () => {
      const rows = await page.locator('#consumers tbody tr').count();
      const cancelled = await page.locator('#consumers tbody tr[data-state="cancelled"]').count();
      return rows === 2 && cancelled === 2 ? true : undefined;
    });
    const exits = await Promise.all(procs.map((p) => exitOf(p)));
    expect(exits.map((e) => e.code)).toEqual([0, 0, 0, 0]);

    expect(await page.textContent('#n-produced')).toBe('12');
    expect(await page.textContent('#n-completed')).toBe('12');
    expect(await page.locator('#producers tbody tr .state').allTextContents()).toEqual(['done', 'done']);
    expect(await page.locator('#consumers tbody tr .state').allTextContents()).toEqual([
      'cancelled',
      'cancelled',
    ]);
    // waiting, active, delayed, failed and cancelled
    expect(await page.locator('#depth-chart polyline').count()).toBe(5);
    // One BullMQ queue: no shard table, no per-shard lines.
    expect(await page.isHidden('#shards-card')).toBe(true);
    // BullMQ said "drained" at least once (when the last job finished), shown apart from the join.
    await pollUntil('a drained moment on the page', async () =>
      /\d\d:\d\d:\d\d/.test((await page.textContent('#drained-list')) ?? '') ? true : undefined,
    );

    await page.screenshot({ path: join(artifacts, 'dashboard.png'), fullPage: true });
    expect(problems, 'errors in the page').toEqual([]);
    expect(foreign, 'requests leaving the dashboard').toEqual([]);
  });

  it('a run of 4,000 processes: the stream carries a summary, each table shows a page, paging works', async () => {
    browser = await launchChromium(profile);
    await seedBigRun(redis, queue, 'big', { producers: 2_000, consumers: 2_000 });
    dash = makeDashboard(queue, { RUN_ID: 'big', DASHBOARD_POLL_MS: '200' });
    const { url } = await dash.listen();
    const full = await readRunStatus(redis, queue, 'big', 3_600_000);
    const fullBytes = JSON.stringify(full).length;
    const update = await readEvents(`${url}/api/events?run=big`, (e) => e.event === 'update');
    const updateBytes = JSON.stringify(update.data).length;
    expect(updateBytes, `an update of ${updateBytes} bytes against a status of ${fullBytes}`).toBeLessThan(
      60_000,
    );
    expect(fullBytes).toBeGreaterThan(600_000);

    const page = await browser.newPage();
    const problems: string[] = [];
    page.on('pageerror', (err) => problems.push(err.message));
    await page.goto(url);
    await page.waitForSelector('#producers tbody tr');
    expect(await page.locator('#producers tbody tr').count()).toBe(50);
    expect(await page.locator('#consumers tbody tr').count()).toBe(50);
    expect(await page.textContent('#producers-pager .pager-text')).toBe('rows 1–50 of 2000');
    expect(await page.textContent('#consumers-pager .pager-text')).toBe('rows 1–50 of 2000');
    expect(await page.textContent('#consumers-summary')).toMatch(/^2000: (\d+ (busy|idle)(, )?){2}$/);
    // The whole page, not the run's size: 4,000 rows would be some 40,000 elements.
    const elements = () => page.locator('*').count();
    expect(await elements()).toBeLessThan(3_000);

    // The second page of producers: the rows the run lists 51st to 100th, and they stay through updates.
    const second = full!.producers.list.slice(50, 100).map((p) => p.id);
    await page.click('#producers-pager .next');
    await page.waitForSelector(`#producers tbody tr[data-producer="${second[0]}"]`);
    expect(await page.textContent('#producers-pager .pager-text')).toBe('rows 51–100 of 2000');
    const updated = await page.textContent('#updated');
    await pollUntil('another update', async () =>
      (await page.textContent('#updated')) !== updated ? true : undefined,
    );
    const shown = await Promise.all(
      (await page.locator('#producers tbody tr').all()).map((r) => r.getAttribute('data-producer')),
    );
    expect(shown).toEqual(second);
    expect(await page.locator('#producers-pager .prev').isDisabled()).toBe(false);
    await page.click('#producers-pager .prev');
    await page.waitForSelector(`#producers tbody tr[data-producer="${full!.producers.list[0]!.id}"]`);
    expect(await page.locator('#producers-pager .prev').isDisabled()).toBe(true);
    expect(await elements()).toBeLessThan(3_000);
    expect(problems, 'errors in the page').toEqual([]);
  });

  it('a cancelled run looks cancelled: banner, tile, the cancelled jobs, the chart apart from failed', async () => {
    browser = await launchChromium(profile);
    dash = makeDashboard(queue, { RUN_ID: 'r', DASHBOARD_POLL_MS: '200' });
    const { url } = await dash.listen();
    const env = {
      REDIS_URL: redisUrl(),
      QUEUE: queue,
      RUN_ID: 'r',
      PRODUCERS: '1',
      JOBS: '12',
      PRODUCE_INTERVAL_MS: '0',
      JOB_MS: '60000',
      HEARTBEAT_MS: '200',
      LOG_LEVEL: 'warn',
    };
    const consumer = spawnRole('consumer', { ...env, CONSUMER_ID: 'c1', CONCURRENCY: '2' }, { label: 'c1' });
    const producer = spawnRole('producer', { ...env, PRODUCER_ID: 'p1' }, { label: 'p1' });
    expect((await exitOf(producer, 30_000)).code).toBe(0);

    const page = await browser.newPage();
    const problems: string[] = [];
    page.on('pageerror', (err) => problems.push(err.message));
    page.on('dialog', (d) => void d.accept());
    await page.goto(url);
    // Two jobs running, ten not started: cancel one of those by hand first.
    await page.waitForSelector('#consumers tbody tr[data-state="busy"]', { timeout: 30_000 });
    await pollUntil('ten jobs listed as not started', async () =>
      (await page.locator('#waiting-list button.job').count()) === 10 ? true : undefined,
    );
    const before = await page.textContent('#join-state');
    expect(before).toBe('not joined: all producers finished, 12 jobs unfinished');
    const oneJob = await page.getAttribute('#waiting-list button.job', 'data-job');
    await page.click('#waiting-list button.job');
    await page.waitForSelector('#cancelled-jobs:not([hidden])');
    expect(await page.textContent('#cancelled-list')).toBe(oneJob!.slice('r+'.length));
    expect(await page.isHidden('#cancel-banner')).toBe(true);

    await page.click('#cancel-run');
    await page.waitForSelector('#join-state[data-state="cancelled"]');
    await pollUntil('the run to join after its cancel', async () =>
      /then joined/.test((await page.textContent('#join-state')) ?? '') ? true : undefined,
    );
    expect(await page.textContent('#join-state')).toMatch(
      /^cancelled at \d\d:\d\d:\d\d, then joined at \d\d:\d\d:\d\d \(12 jobs cancelled, 0 unfinished\)$/,
    );
    expect(await page.textContent('#cancel-banner')).toMatch(
      /^Run cancelled at \d\d:\d\d:\d\d by the dashboard \(from [\d.:a-f]+\) \(cancelled from the dashboard\): it removed 9 jobs not yet started at once; 12 cancelled in all, the others aborted while running or removed once acknowledged\.$/,
    );
    expect(await page.textContent('#n-cancelled')).toBe('12');
    expect(await page.textContent('#n-failed')).toBe('0');
    expect(await page.textContent('#progress-text')).toBe('0 of 12 produced jobs finished, 12 cancelled');
    expect(await page.textContent('#cancelled-count')).toBe('12');
    // One producer, one consumer: nothing to page, and no sign-out without a token.
    expect(await page.isHidden('#producers-pager')).toBe(true);
    expect(await page.isHidden('#consumers-pager')).toBe(true);
    expect(await page.isHidden('#logout')).toBe(true);
    // The two aborted jobs sit in BullMQ's failed set: the chart counts them cancelled, not failed.
    await pollUntil('the chart to count the aborted jobs cancelled', async () =>
      (await page.getAttribute('#depth-chart', 'data-cancelled')) === '2' ? true : undefined,
    );
    expect(await page.getAttribute('#depth-chart', 'data-failed')).toBe('0');
    expect(await page.locator('#depth-chart polyline.cancelled').count()).toBe(1);
    expect((await exitOf(consumer, 30_000)).code).toBe(0);
    mkdirSync(artifacts, { recursive: true });
    await page.screenshot({ path: join(artifacts, 'dashboard-cancelled.png'), fullPage: true });
    expect(problems, 'errors in the page').toEqual([]);
  });

  it('SHARDS=3: a per-shard table beside the totals, and one thin depth line per shard', async () => {
    browser = await launchChromium(profile);
    const { run, queues: shards, producer } = await openShardedRun(redis, queue, 's', 3);
    await producer.putMany(
      Array.from({ length: 7 }, (_, i) => ({ type: 'sleep', payload: { value: i, ms: 0 } })),
    );
    // Shard 1's jobs finish in the run and the producer is done: shard 1 closes, 0 and 2 wait.
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

    dash = makeDashboard(queue, { SHARDS: '3', DASHBOARD_POLL_MS: '200' });
    const { url } = await dash.listen();
    const page = await browser.newPage();
    const problems: string[] = [];
    page.on('pageerror', (err) => problems.push(err.message));
    await page.goto(`${url}/?run=s`);
    await page.waitForSelector('#shards tbody tr[data-shard="2"]');
    const rows = await Promise.all(
      (await page.locator('#shards tbody tr').all()).map((tr) => tr.locator('td').allTextContents()),
    );
    // shard, BullMQ queue, waiting, active, completed, failed, unfinished (run), closed
    expect(rows).toEqual([
      ['0', `${queue}#0`, '3', '0', '0', '0', '3', 'no'],
      ['1', `${queue}#1`, '0', '0', '2', '0', '0', 'yes'],
      ['2', `${queue}#2`, '2', '0', '0', '0', '2', 'no'],
    ]);
    expect(await page.textContent('#n-produced')).toBe('7');
    expect(await page.textContent('#n-unfinished')).toBe('5');
    expect(await page.isVisible('#legend-shards')).toBe(true);
    await pollUntil('the chart to draw', async () =>
      Number(await page.getAttribute('#depth-chart', 'data-points')) >= 2 ? true : undefined,
    );
    expect(await page.locator('#depth-chart polyline:not(.shard)').count()).toBe(5);
    expect(await page.locator('#depth-chart polyline.shard').count()).toBe(3);
    await page.screenshot({ path: join(artifacts, 'dashboard-shards.png'), fullPage: true });
    expect(problems, 'errors in the page').toEqual([]);
  });

  it('DNS rebinding: a page under another name that resolves to the dashboard reads and changes nothing', async () => {
    // attacker.test resolves to 127.0.0.1, as after a rebinding; Private Network Access plays no part
    // (same address space), as in browsers that lack it.
    browser = await launchChromium(profile, ['--host-resolver-rules=MAP attacker.test 127.0.0.1']);
    const run = new RunStore(redis, queue, 'r');
    await run.create(1);
    dash = makeDashboard(queue);
    const { port } = await dash.listen();
    const page = await browser.newPage();
    const landing = await page.goto(`http://attacker.test:${port}/`);
    expect(landing?.status()).toBe(403);
    // The attacker's script runs in that origin: same-origin reads and writes, custom headers allowed.
    const attempts = await page.evaluate(async () => {
      const json = { 'content-type': 'application/json', 'x-conveyor-action': '1' };
      const status = await fetch('/api/status?run=r');
      const cancel = await fetch('/api/actions/cancel-run', {
        method: 'POST',
        headers: json,
        body: JSON.stringify({ run: 'r' }),
      });
      const queues = (await (await fetch('/queues/api/queues')).text()).slice(0, 200);
      return { status: status.status, cancel: cancel.status, queues };
    });
    expect(attempts).toMatchObject({ status: 403, cancel: 403 });
    expect(attempts.queues).toContain('does not answer for the host "attacker.test"');
    expect(await run.cancelledAt()).toBeNull();

    // The same browser, addressing the dashboard by its own name, is served.
    await page.goto(`http://127.0.0.1:${port}/?run=r`);
    await page.waitForSelector('#conn[data-state="live"]');
  });

  it('Bull Board renders under its Content-Security-Policy, with nothing refused', async () => {
    browser = await launchChromium(profile);
    await new RunStore(redis, queue, 'r').create(1);
    dash = makeDashboard(queue);
    const { url } = await dash.listen();
    const page = await browser.newPage();
    const problems: string[] = [];
    page.on('pageerror', (err) => problems.push(err.message));
    page.on('console', (msg) => {
      if (msg.type() === 'error') problems.push(msg.text());
    });
    const res = await page.goto(`${url}/queues`);
    expect(res?.headers()['content-security-policy']).toContain("default-src 'self'");
    await page.getByText(queue).first().waitFor();
    expect(problems, 'errors in the page (a CSP refusal shows as one)').toEqual([]);
  });

  it("Bull Board's empty metrics chart names conveyor's switch, QUEUE_METRICS=true", async () => {
    browser = await launchChromium(profile);
    await new RunStore(redis, queue, 'r').create(1);
    dash = makeDashboard(queue);
    const { url } = await dash.listen();
    const page = await browser.newPage();
    const problems: string[] = [];
    page.on('pageerror', (err) => problems.push(err.message));
    await page.goto(`${url}/queues/queue/${encodeURIComponent(queue)}`);
    // The queue's page opens with its throughput chart, empty without QUEUE_METRICS.
    await page.getByText(QUEUE_METRICS_HINT).waitFor();
    // BullMQ's worker option, which a conveyor user cannot set, is no longer what it asks for.
    expect(await page.getByText('maxDataPoints').count()).toBe(0);
    expect(problems, 'errors in the page').toEqual([]);
  });

  it('token sign-in: the form signs in, the page works, Sign out ends the session', async () => {
    browser = await launchChromium(profile);
    await new RunStore(redis, queue, 'r').create(1);
    const token = 'tok-0123456789abcdef-browser';
    dash = makeDashboard(queue, { DASHBOARD_TOKEN: token });
    const { url } = await dash.listen();
    const page = await browser.newPage();
    const problems: string[] = [];
    page.on('pageerror', (err) => problems.push(err.message));
    page.on('console', (msg) => {
      if (msg.type() === 'error' && !msg.text().includes('401')) problems.push(msg.text());
    });
    await page.goto(url);
    await page.fill('input[name="token"]', token);
    await page.click('button');
    await page.waitForSelector('#conn[data-state="live"]');
    const [cookie] = await browser.cookies(url);
    expect(cookie?.value).not.toContain(token);
    expect(cookie?.expires).toBeGreaterThan(Date.now() / 1000 + 11 * 3600);
    await page.click('#logout button');
    await page.waitForSelector('input[name="token"]');
    expect(await browser.cookies(url)).toEqual([]);
    expect(problems, 'errors in the page').toEqual([]);
  });
});
