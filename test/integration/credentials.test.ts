import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import { startRedisServer, type RedisServerHandle } from '../../shared/redis-server.js';
import { exitOf, killLeftovers, spawnRole } from '../helpers/processes.js';

const count = (text: string, part: string) => text.split(part).length - 1;

/** Credential mistakes, each said once, in words that say what to change. */
describe('Redis credentials', () => {
  let locked: RedisServerHandle;
  let open: RedisServerHandle;
  beforeAll(async () => {
    const binary = inject('redisServerBinary');
    if (!binary)
      throw new Error('this test starts its own redis-server: install one (apt-get install redis-server)');
    [locked, open] = await Promise.all([
      startRedisServer({ binary, args: ['--requirepass', 'right-one'] }),
      startRedisServer({ binary }),
    ]);
  });
  afterAll(async () => {
    await Promise.all([locked?.stop(), open?.stop()]);
  });
  afterEach(async () => expect(await killLeftovers()).toEqual([]));

  it('no password for a Redis that needs one: one error saying REDIS_URL lacks the password', async () => {
    const c = spawnRole('consumer', { REDIS_URL: locked.url, RUN_ID: 'creds' });
    expect((await exitOf(c)).code).toBe(1);
    const out = c.output();
    const message = `Redis at ${locked.url} refused the credentials: it requires a password and REDIS_URL has none`;
    expect(out).toContain(message);
    expect(count(out, message)).toBe(1);
    expect(out).not.toContain('HELLO');
  });

  it('a wrong password: one error, the password not shown', async () => {
    const url = locked.url.replace('redis://', 'redis://:wrong-one@');
    const c = spawnRole('consumer', { REDIS_URL: url, RUN_ID: 'creds' });
    expect((await exitOf(c)).code).toBe(1);
    const out = c.output();
    expect(count(out, 'refused the credentials: the user name or password in REDIS_URL is wrong')).toBe(1);
    expect(out).not.toContain('wrong-one');
  });

  it('a password sent to a Redis that needs none: works, with one warning', async () => {
    const url = open.url.replace('redis://', 'redis://:pointless@');
    const c = spawnRole('consumer', { REDIS_URL: url, RUN_ID: 'creds', QUEUE: 'creds' });
    await c.waitFor('consumer ready');
    await c.waitFor('accepts connections without a password');
    c.child.kill('SIGTERM');
    expect((await exitOf(c)).code).toBe(0);
    expect(count(c.output(), 'accepts connections without a password')).toBe(1);
    expect(c.output()).not.toContain('pointless');
  });
});
