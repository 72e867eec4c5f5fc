import { Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import { projectRoot } from '../../shared/roles.js';
import { FAST } from '../helpers/demo.js';
import { exitOf, spawnTracked } from '../helpers/processes.js';

/** Whether a Redis answers PING on `port`; a Redis left behind is shut down so the test leaks nothing. */
async function redisLeftOn(port: number): Promise<boolean> {
  const redis = new Redis(port, '127.0.0.1', { lazyConnect: true, retryStrategy: () => null });
  redis.on('error', () => undefined);
  try {
    await redis.connect();
    await redis.call('SHUTDOWN', 'NOSAVE').catch(() => undefined);
    return true;
  } catch {
    return false;
  } finally {
    redis.disconnect();
  }
}

describe('demo start-up', () => {
  it('a Ctrl-C before the run is announced ends the demo by the signal and stops its private Redis', async () => {
    const demo = spawnTracked(
      'demo',
      process.execPath,
      ['--import', 'tsx', `${projectRoot}/scripts/demo/main.ts`],
      { ...FAST, PRODUCERS: '1', CONSUMERS: '1', JOBS: '1', DEMO_DASHBOARD: 'false' },
      { group: true },
    );
    const started = /Started a private Redis at redis:\/\/127\.0\.0\.1:(\d+)/;
    await demo.waitFor(started, 30_000);
    // What a terminal does on Ctrl-C: SIGINT to the foreground process group.
    process.kill(-demo.child.pid!, 'SIGINT');
    const { signal } = await exitOf(demo, 30_000);
    const port = Number(started.exec(demo.stdout())![1]);
    expect(await redisLeftOn(port), demo.output()).toBe(false);
    // The Ctrl-C came before the announcement (the case under test), and ended the demo as it did.
    expect(demo.stdout()).not.toContain('Ctrl-C stops everything');
    expect(signal).toBe('SIGINT');
  }, 60_000);
});
