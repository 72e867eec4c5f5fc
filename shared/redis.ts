import { readFileSync } from 'node:fs';
import { Cluster, Redis, type ClusterOptions, type RedisOptions } from 'ioredis';
import { parseRedisTarget, readRedisUrl, redactUrl, type RedisTarget } from './redis-url.js';
import type { Logger } from './logger.js';

export type RedisConnectionConfig = { redisUrl: string; redisTlsCaFile: string | undefined };

/**
 * Hands a startup node's name to the node's own connection instead of resolving it up front. ioredis
 * resolves every startup name on each `connect()` and gives up that attempt when any one fails, so
 * while one named node is gone from DNS (a stopped Compose container, a deleted pod) no connect
 * succeeds, however many other nodes answer; BullMQ reconnects a worker's blocking connection that
 * way after a failover. Resolved per connection, an unknown name fails that node alone.
 */
const resolveOnConnect = (
  hostname: string,
  callback: (err: NodeJS.ErrnoException | null, address: string) => void,
): void => callback(null, hostname);

/**
 * How a cluster connection rides out a failover: a command whose master died is retried (every
 * 200 ms, up to about a minute) until the replica has taken over, instead of failing after ioredis's
 * default 16 tries (about 1.6 s, less than Redis Cluster's own node timeout); a startup node whose
 * name stopped resolving does not keep the client from reconnecting through the others; and a
 * reconnect always settles. With the ready check, ioredis answers a connect() made while the cluster
 * is failing over (CLUSTER INFO says fail, or names the dead master) by reconnecting under a new
 * connect() and never settles the first: BullMQ awaits that promise when it resets a worker's
 * blocking connection, and the worker then never fetches again nor closes. Without it the client is
 * ready once it has the slot map, and a command the cluster refuses meanwhile (CLUSTERDOWN) is
 * retried as above.
 */
export const CLUSTER_FAILOVER_OPTIONS = {
  maxRedirections: 300,
  retryDelayOnFailover: 200,
  retryDelayOnClusterDown: 200,
  retryDelayOnTryAgain: 200,
  dnsLookup: resolveOnConnect,
  enableReadyCheck: false,
} as const satisfies ClusterOptions;

/** A connection to one Redis or to a Redis Cluster; both speak the same commands. */
export type RedisClient = Redis | Cluster;

export { redactUrl } from './redis-url.js';

/** Errors no retry can fix: Redis refused the credentials, or its TLS certificate is not trusted. */
const AUTH_ERROR = /^(WRONGPASS|NOAUTH|NOPERM|ERR AUTH|ERR invalid password|ERR Client sent AUTH)/;
const TLS_ERROR_CODES = new Set([
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'CERT_UNTRUSTED',
  'CERT_SIGNATURE_FAILURE',
  'ERR_TLS_CERT_ALTNAME_INVALID',
  'ERR_SSL_WRONG_VERSION_NUMBER',
]);

/**
 * Redis cannot be used with this configuration; the message says what to change. It deliberately
 * keeps no `cause`: ioredis's reply error carries the failed command, and for AUTH/HELLO that is the
 * password, which a logged error would print.
 */
export class RedisConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'RedisConfigError';
  }
}

/** The fatal reading of a connection error, or null when waiting for Redis may still help. */
export function fatalRedisError(err: Error, url: string): RedisConfigError | null {
  const where = `Redis at ${redactUrl(url)}`;
  if (AUTH_ERROR.test(err.message)) {
    const target = parseRedisTarget(url);
    const hasPassword =
      target?.kind === 'cluster'
        ? target.password !== undefined
        : Boolean(target && readRedisUrl(target.url)?.password);
    const code = err.message.split(' ')[0];
    if (code === 'NOAUTH' && !hasPassword)
      return new RedisConfigError(
        `${where} refused the credentials: it requires a password and REDIS_URL has none. ` +
          'Put it in REDIS_URL as redis://:password@host:port (or redis://user:password@host:port).',
      );
    if (code === 'NOPERM')
      return new RedisConfigError(
        `${where} refused the credentials: the user in REDIS_URL may not run a command conveyor needs (NOPERM); ` +
          'see docs/security.md for the ACL it needs.',
      );
    return new RedisConfigError(
      `${where} refused the credentials: the user name or password in REDIS_URL is wrong (${code ?? '?'}). ` +
        'Check REDIS_URL (redis://user:password@host:port) and that the user is enabled (docs/security.md).',
    );
  }
  const code = (err as NodeJS.ErrnoException).code ?? '';
  if (TLS_ERROR_CODES.has(code)) {
    return new RedisConfigError(
      `The TLS connection to ${where} failed (${err.message}): set REDIS_TLS_CA to the CA file that signed the server's ` +
        'certificate, and make sure the certificate names the host in REDIS_URL (and that the port speaks TLS).',
    );
  }
  return null;
}

/**
 * Opens a Redis connection that waits out outages instead of failing: commands queue while
 * disconnected (`maxRetriesPerRequest: null`, which BullMQ workers require anyway) and reconnects
 * back off up to 5 s, logging each wait with the last error so a missing Redis is never a silent hang.
 * Wrong credentials or an untrusted TLS certificate before the first successful connection are not an
 * outage: the connection ends and `waitUntilReady` rejects with a RedisConfigError saying what to fix.
 */
export function createRedis(config: RedisConnectionConfig, log: Logger, name: string): RedisClient {
  let lastError: Error | undefined;
  let everReady = false;
  // An outage is said once when it starts and once when it ends; the retries between are debug.
  let downSince: number | undefined;
  let retries = 0;
  const retryStrategy = (attempt: number): number | null => {
    const fatal = lastError && fatalRedisError(lastError, config.redisUrl);
    // The error reaches the process through waitUntilReady, which says it once; nothing to log here.
    if (fatal && !everReady) return null;
    const delay = Math.min(100 * 2 ** Math.min(attempt, 6), 5_000);
    const fields = { attempt, retryInMs: delay, redis: redactUrl(config.redisUrl), err: lastError?.message };
    retries++;
    if (downSince === undefined) {
      downSince = Date.now();
      log.warn(fields, everReady ? 'Redis unreachable: waiting for it' : 'waiting for Redis');
    } else log.debug(fields, 'still waiting for Redis');
    return delay;
  };
  const options: RedisOptions = {
    maxRetriesPerRequest: null,
    enableReadyCheck: true,
    connectionName: name,
  };
  if (config.redisTlsCaFile) options.tls = { ca: readFileSync(config.redisTlsCaFile) };
  const target = parseRedisTarget(config.redisUrl);
  if (!target) throw new RedisConfigError(`REDIS_URL ${redactUrl(config.redisUrl)} is not a Redis URL.`);
  let redis: RedisClient;
  if (target.kind === 'cluster') {
    if (target.tls && !options.tls) options.tls = {};
    const clusterOptions: ClusterOptions = {
      ...CLUSTER_FAILOVER_OPTIONS,
      redisOptions: { ...options, username: target.username, password: target.password },
      clusterRetryStrategy: retryStrategy,
      // Keep commands queued while the cluster fails over, like a single Redis's offline queue.
      enableOfflineQueue: true,
    };
    redis = new Cluster(target.nodes, clusterOptions);
  } else {
    redis = new Redis(target.url, { ...options, retryStrategy });
  }
  (redis as RedisWithFatal)[fatalError] = () => lastError && fatalRedisError(lastError, config.redisUrl);
  redis.on('ready', () => {
    if (!everReady) warnIfPasswordUnneeded(target, log);
    if (downSince !== undefined)
      log.info(
        { downMs: Date.now() - downSince, retries, redis: redactUrl(config.redisUrl) },
        everReady ? 'Redis is reachable again' : 'Redis is reachable',
      );
    downSince = undefined;
    retries = 0;
    everReady = true;
    lastError = undefined;
  });
  // Errors surface through retryStrategy's log; without a listener ioredis would print them unformatted.
  redis.on('error', (err: Error) => {
    lastError = err;
    log.debug({ err: err.message }, 'redis connection error');
  });
  return redis;
}

const warnedUnneeded = new Set<string>();

/**
 * A password in REDIS_URL that Redis does not ask for is accepted silently (the default user takes
 * any password), so a server someone believes protected may be open to all. Checked once per URL and
 * process, with a connection that sends no password.
 */
function warnIfPasswordUnneeded(target: RedisTarget, log: Logger): void {
  if (target.kind !== 'single') return;
  const parts = readRedisUrl(target.url);
  if (!parts?.password || warnedUnneeded.has(target.url)) return;
  warnedUnneeded.add(target.url);
  // The same URL without credentials (ioredis also reads them from the query).
  const url = parts.url;
  url.username = '';
  url.password = '';
  url.searchParams.delete('username');
  url.searchParams.delete('password');
  const probe = new Redis(url.toString(), {
    lazyConnect: true,
    maxRetriesPerRequest: 0,
    enableOfflineQueue: false,
    retryStrategy: () => null,
    connectionName: 'conveyor:auth-probe',
    ...(target.url.startsWith('rediss:') ? { tls: {} } : {}),
  });
  probe.on('error', () => undefined);
  void probe
    .connect()
    .then(() => probe.ping())
    .then(
      () =>
        log.warn(
          `REDIS_URL carries a password, but Redis at ${redactUrl(target.url)} accepts connections without a password: ` +
            'anyone who can reach it can use it. Set one (requirepass, or an ACL user) or drop it from REDIS_URL (docs/security.md).',
        ),
      () => undefined,
    )
    .finally(() => probe.disconnect());
}

/** A second connection to the same Redis (or cluster), e.g. for pub/sub, with its own name. */
export function duplicateClient(redis: RedisClient, name: string): RedisClient {
  return redis instanceof Cluster
    ? redis.duplicate(undefined, { redisOptions: { ...redis.options.redisOptions, connectionName: name } })
    : redis.duplicate({ connectionName: name });
}

const fatalError = Symbol('fatalError');
type RedisWithFatal = RedisClient & { [fatalError]?: () => RedisConfigError | null | undefined };

/**
 * Resolves once the connection is ready (after any retries), logging that it is. Rejects when the
 * connection ends first, or when `signal` aborts (a shutdown: a connection between retries may never
 * emit 'end', even after disconnect()).
 */
export async function waitUntilReady(redis: RedisClient, log: Logger, signal?: AbortSignal): Promise<void> {
  if (redis.status !== 'ready') {
    await new Promise<void>((resolve, reject) => {
      const done = () => {
        redis.off('ready', onReady);
        redis.off('end', onEnd);
        signal?.removeEventListener('abort', onAbort);
      };
      const onReady = () => {
        done();
        resolve();
      };
      const onEnd = () => {
        done();
        reject(
          (redis as RedisWithFatal)[fatalError]?.() ??
            new Error('Redis connection closed before it became ready.'),
        );
      };
      const onAbort = () => {
        done();
        reject(new Error('stopped while waiting for Redis'));
      };
      redis.once('ready', onReady);
      redis.once('end', onEnd);
      signal?.addEventListener('abort', onAbort, { once: true });
      if (signal?.aborted) onAbort();
    });
  }
  log.debug('redis ready');
}

/** Closes a connection politely, falling back to a hard disconnect if QUIT cannot be sent. */
export async function closeRedis(redis: RedisClient): Promise<void> {
  if (redis.status === 'end') return;
  // Not connected (an outage, or never connected): nothing to be polite to, and QUIT would wait.
  if (redis.status !== 'ready') {
    redis.disconnect();
    return;
  }
  try {
    await Promise.race([redis.quit(), new Promise((_, rej) => setTimeout(rej, 1_000).unref())]);
  } catch {
    redis.disconnect();
  }
}

/**
 * For a one-shot command: like waitUntilReady, but a Redis that does not answer within `timeoutMs`
 * is an error to report (naming the URL, the last connection error and `advice`), not an outage to
 * wait out.
 */
export async function readyWithin(
  redis: RedisClient,
  log: Logger,
  redisUrl: string,
  timeoutMs: number,
  advice: string,
): Promise<void> {
  let lastError = '';
  const onError = (err: Error) => (lastError = err.message);
  redis.on('error', onError);
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      waitUntilReady(redis, log),
      new Promise<never>((_, reject) => {
        timer = setTimeout(
          () =>
            reject(
              new Error(
                `no answer from Redis at ${redactUrl(redisUrl)} within ${timeoutMs / 1000} s` +
                  (lastError ? ` (${lastError})` : '') +
                  `: ${advice}`,
              ),
            ),
          timeoutMs,
        );
      }),
    ]);
  } finally {
    clearTimeout(timer);
    redis.off('error', onError);
  }
}
