import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import { ConfigError, parseEnv, redisUrl as redisUrlSetting } from '../../shared/config.js';
import { startRedisServer, type RedisServerHandle } from '../../shared/redis-server.js';
import { redactUrl } from '../../shared/redis-url.js';
import { dashboardUrlOf, exitOf, killLeftovers, spawnRole } from '../helpers/processes.js';
import { pollUntil } from '../helpers/redis.js';

/**
 * Passwords a private Redis accepts: the default user takes any of the first three, the ACL user
 * `ops@team` (an `@` in its name) the fourth. Every one ends in "SECRET" plus a digit, and no part of
 * any may ever be printed.
 */
const PASSWORDS = ['plain-SECRET1', 'p@ss-SECRET2', 'pa:ss-SECRET3', 'acl-SECRET4'];
const leaks = (text: string) =>
  PASSWORDS.flatMap((p) => [p, encodeURIComponent(p), p.split(/[@:]/).at(-1)!]).filter((s) =>
    text.includes(s),
  );

/** Every way to spell the credentials in REDIS_URL that ioredis reads and authenticates with. */
function spellings(hostPort: string): Record<string, string> {
  return {
    'password only': `redis://:plain-SECRET1@${hostPort}`,
    'user and password': `redis://default:plain-SECRET1@${hostPort}`,
    'an @ in the password': `redis://:p@ss-SECRET2@${hostPort}`,
    'an @ in the password, encoded': `redis://:p%40ss-SECRET2@${hostPort}`,
    'a : in the password': `redis://:pa:ss-SECRET3@${hostPort}`,
    '?password=': `redis://${hostPort}/?password=plain-SECRET1`,
    '?password= without the slash': `redis://${hostPort}?password=plain-SECRET1`,
    '?password= beside a db': `redis://${hostPort}/0?db=0&password=plain-SECRET1`,
    'an ACL user with an @ in its name': `redis://ops@team:acl-SECRET4@${hostPort}`,
    'an ACL user with an @, encoded': `redis://ops%40team:acl-SECRET4@${hostPort}`,
    '?username= and ?password=': `redis://${hostPort}/?username=ops%40team&password=acl-SECRET4`,
  };
}

describe('secrets in REDIS_URL, however spelled', () => {
  let server: RedisServerHandle;
  let hostPort: string;
  beforeAll(async () => {
    const binary = inject('redisServerBinary');
    if (!binary)
      throw new Error('this test starts its own redis-server: install one (apt-get install redis-server)');
    server = await startRedisServer({
      binary,
      // Each word its own argument: redis-server quotes an argument with spaces as one word.
      args: [
        ...['--user', 'default', 'on', ...PASSWORDS.slice(0, 3).map((p) => `>${p}`), '~*', '&*', '+@all'],
        ...['--user', 'ops@team', 'on', `>${PASSWORDS[3]}`, '~*', '&*', '+@all'],
      ],
    });
    hostPort = `127.0.0.1:${server.port}`;
  });
  afterAll(async () => {
    await server?.stop();
  });
  afterEach(async () => expect(await killLeftovers()).toEqual([]));

  it('each spelling authenticates with ioredis, and redactUrl shows no part of its secret', async () => {
    // No password: refused, so every spelling below is really authenticating.
    const anonymous = new Redis(`redis://${hostPort}`, {
      lazyConnect: true,
      maxRetriesPerRequest: 0,
      retryStrategy: () => null,
    });
    let refusal = '';
    anonymous.on('error', (err: Error) => (refusal ||= err.message));
    await expect(anonymous.connect().then(() => anonymous.ping())).rejects.toThrow();
    expect(refusal).toMatch(/NOAUTH/);
    anonymous.disconnect();
    for (const [spelling, url] of Object.entries(spellings(hostPort))) {
      const redis = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0 });
      redis.on('error', () => undefined);
      try {
        await redis.connect();
        expect(await redis.ping(), spelling).toBe('PONG');
      } finally {
        redis.disconnect();
      }
      const shown = redactUrl(url);
      expect(leaks(shown), `${spelling}: ${shown}`).toEqual([]);
      expect(shown, spelling).toContain(hostPort);
    }
  });

  it('a malformed REDIS_URL with a password in it: the configuration error does not show it', () => {
    for (const url of [
      'redis://:plain-SECRET1@127.0.0.1:99999',
      'redis://:plain-SECRET1@',
      'redis//:plain-SECRET1@host',
      'redis+cluster://:p@ss-SECRET2@',
    ]) {
      let message = '';
      try {
        parseEnv({ REDIS_URL: redisUrlSetting() }, { REDIS_URL: url });
      } catch (err) {
        if (err instanceof ConfigError) message = err.message;
      }
      expect(message, url).toMatch(/^Invalid configuration:\n {2}- REDIS_URL: /);
      expect(leaks(message), message).toEqual([]);
    }
  });

  it('cluster URLs: the password is hidden however it is spelled', () => {
    for (const url of [
      'redis+cluster://:p@ss-SECRET2@127.0.0.1:7000,127.0.0.1:7001',
      'redis+cluster://ops@team:acl-SECRET4@127.0.0.1:7000',
      'rediss+cluster://default:pa:ss-SECRET3@127.0.0.1:7000',
    ]) {
      const shown = redactUrl(url);
      expect(leaks(shown), shown).toEqual([]);
      expect(shown).toContain('127.0.0.1:7000');
    }
  });

  it('the dashboard and a producer print no part of the password in any line, at debug level', async () => {
    const all = spellings(hostPort);
    const urls = [
      all['an @ in the password']!,
      all['?password= without the slash']!,
      all['an ACL user with an @ in its name']!,
    ];
    // One dashboard and one producer per spelling, all at once.
    await Promise.all(
      urls.map(async (url, i) => {
        const env = { REDIS_URL: url, QUEUE: `secrets-${i}`, LOG_LEVEL: 'debug' };
        const dashboard = spawnRole('dashboard', { ...env, DASHBOARD_PORT: '0' }, { label: 'dashboard' });
        const producer = spawnRole(
          'producer',
          { ...env, RUN_ID: 'r', PRODUCERS: '1', JOBS: '0', PRODUCER_ID: 'p1' },
          { label: 'producer' },
        );
        const base = await dashboardUrlOf(dashboard);
        await pollUntil('the dashboard to reach Redis', async () =>
          (await fetch(`${base}/readyz`)).status === 200 ? true : undefined,
        );
        expect((await exitOf(producer)).code).toBe(0);
        dashboard.child.kill('SIGTERM');
        expect((await exitOf(dashboard)).code).toBe(0);
        expect(dashboard.output()).toContain('dashboard starting');
        expect(producer.output()).toContain('producer starting');
        for (const p of [dashboard, producer])
          expect(leaks(p.output()), `${p.label} with ${url}`).toEqual([]);
      }),
    );
    const cleanup = new Redis(urls[0]!);
    await cleanup.flushall();
    cleanup.disconnect();
  });

  it('a wrong password given as ?password=: one error that says so, the password not shown', async () => {
    const c = spawnRole('consumer', {
      REDIS_URL: `redis://${hostPort}/?password=wrong-SECRET9`,
      RUN_ID: 'creds',
    });
    expect((await exitOf(c)).code).toBe(1);
    expect(c.output()).toContain('refused the credentials');
    expect(c.output()).not.toContain('SECRET9');
  });
});
