import type { Redis } from 'ioredis';
import request from 'supertest';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { RunStore } from '../../shared/run/run-store.js';
import type { DepthSample } from '../../dashboard/live-runs.js';
import { connect, dropQueue, testQueue } from '../helpers/redis.js';
import { makeDashboard, readEvents, type TestDashboard } from './harness.js';

/** The live page's first-hour surprises: which run it shows, the chart across runs, Bull Board offline. */
describe('dashboard live page', () => {
  let redis: Redis;
  let queue: string;
  let dash: TestDashboard | undefined;
  beforeEach(() => {
    redis = connect();
    queue = testQueue();
  });
  afterEach(async () => {
    await dash?.close();
    dash = undefined;
    await dropQueue(redis, queue);
    redis.disconnect();
  });

  it('with RUN_ID the page is told which run it shows by default (not "latest")', async () => {
    await new RunStore(redis, queue, 'run-a').create(1);
    await new RunStore(redis, queue, 'run-k').create(1);
    dash = makeDashboard(queue, { RUN_ID: 'run-a' });
    const info = await request(dash.dashboard.app).get('/api/info').expect(200);
    expect(info.body).toMatchObject({ defaultRun: 'run-a' });
    const { url } = await dash.listen();
    const update = await readEvents(`${url}/api/events`, (e) => e.event === 'update');
    expect(update.data).toMatchObject({ runId: 'run-a', runs: ['run-k', 'run-a'] });
  });

  it("switching to another run keeps the queue's depth history", async () => {
    await new RunStore(redis, queue, 'run-a').create(1);
    await new RunStore(redis, queue, 'run-b').create(1);
    dash = makeDashboard(queue);
    const { url } = await dash.listen();
    // Watch run-a until its poller has read the queue a few times.
    let seen = 0;
    await readEvents(`${url}/api/events?run=run-a`, (e) => e.event === 'update' && ++seen >= 3);
    const history = await readEvents(`${url}/api/events?run=run-b`, (e) => e.event === 'history');
    expect((history.data as { samples: DepthSample[] }).samples.length).toBeGreaterThanOrEqual(3);
  });

  it('Bull Board is served without asking Google for fonts', async () => {
    dash = makeDashboard(queue);
    const page = await request(dash.dashboard.app).get('/queues').expect(200);
    expect(page.text).toContain('<div id="root">');
    expect(page.text).not.toMatch(/fonts\.(googleapis|gstatic)\.com/);
  });
});
