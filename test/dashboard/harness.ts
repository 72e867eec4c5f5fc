import { QueueEvents } from 'bullmq';
import type { Redis } from 'ioredis';
import { createApp, type Dashboard } from '../../dashboard/app.js';
import { loadDashboardConfig } from '../../dashboard/config.js';
import { startServer, type RunningServer } from '../../dashboard/server.js';
import { queuePrefix } from '../../shared/keys.js';
import { createLogger } from '../../shared/logger.js';
import { openQueues } from '../../shared/queue.js';
import { connect, redisUrl } from '../helpers/redis.js';

export type TestDashboard = {
  dashboard: Dashboard;
  redis: Redis;
  /** Listens on a free loopback port (for SSE and the browser); closed by `close`. */
  listen(): Promise<RunningServer>;
  /** Resolves once the QueueEvents reader (if any) is connected. */
  queueEventsReady?: () => Promise<unknown>;
  close(): Promise<void>;
};

/**
 * A dashboard on its own connection for `queue`, configured from `env` like `dashboard/main.ts` does
 * (`SHARDS` in `env` spreads it over that many BullMQ queues); with `queueEvents` (unsharded only),
 * drained moments come from BullMQ's event stream as in production.
 */
export function makeDashboard(
  queue: string,
  env: Record<string, string> = {},
  opts: { queueEvents?: boolean; stallMs?: number } = {},
): TestDashboard {
  const config = loadDashboardConfig({
    REDIS_URL: redisUrl(),
    QUEUE: queue,
    DASHBOARD_POLL_MS: '100',
    ...env,
  });
  const redis = connect();
  const queues = openQueues(queue, config.shards, redis);
  const eventsRedis = opts.queueEvents ? connect() : undefined;
  const queueEvents = eventsRedis
    ? new QueueEvents(queue, { connection: eventsRedis, prefix: queuePrefix(queue) })
    : undefined;
  const log = createLogger({ level: 'silent', service: 'test-dashboard' });
  const dashboard = createApp({ config, redis, queues, queueEvents, log, stallMs: opts.stallMs });
  let server: RunningServer | undefined;
  return {
    dashboard,
    redis,
    queueEventsReady: queueEvents ? () => queueEvents.waitUntilReady() : undefined,
    listen: async () => (server ??= await startServer(dashboard, { host: '127.0.0.1', port: 0 })),
    close: async () => {
      if (server) await server.close();
      dashboard.close();
      await queueEvents?.close();
      eventsRedis?.disconnect();
      await Promise.all(queues.map((q) => q.close()));
      redis.disconnect();
    },
  };
}

export type SseEvent = { event: string; data: unknown };

/**
 * Reads a Server-Sent Events stream until `until` accepts an event (resolves with it) or the deadline
 * passes. Aborts the request either way.
 */
export async function readEvents(
  url: string,
  until: (e: SseEvent) => boolean,
  opts: { headers?: Record<string, string>; timeoutMs?: number; onOpen?: () => Promise<void> | void } = {},
): Promise<SseEvent> {
  const abort = new AbortController();
  const timer = setTimeout(
    () => abort.abort(new Error(`no matching event from ${url} within ${opts.timeoutMs ?? 20_000} ms`)),
    opts.timeoutMs ?? 20_000,
  );
  try {
    const res = await fetch(url, {
      headers: { accept: 'text/event-stream', ...opts.headers },
      signal: abort.signal,
    });
    if (res.status !== 200 || !res.body) throw new Error(`event stream answered ${res.status}`);
    await opts.onOpen?.();
    const decoder = new TextDecoder();
    let buffer = '';
    for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
      buffer += decoder.decode(chunk, { stream: true });
      let end: number;
      while ((end = buffer.indexOf('\n\n')) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const event = /^event: (.*)$/m.exec(block)?.[1];
        const data = /^data: (.*)$/m.exec(block)?.[1];
        if (event && data) {
          const e = { event, data: JSON.parse(data) as unknown };
          if (until(e)) return e;
        }
      }
    }
    throw new Error('event stream ended');
  } finally {
    clearTimeout(timer);
    abort.abort();
  }
}
