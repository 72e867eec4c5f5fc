import { Router } from 'express';
import type { Registry } from 'prom-client';
import { metricsHandler } from '../../shared/metrics/metrics-server.js';
import type { RedisClient } from '../../shared/redis.js';

/** /healthz, /readyz and (given a registry) /metrics: open, so orchestrators and Prometheus need no secret. */
export function probeRoutes(redis: RedisClient, metrics?: Registry): Router {
  const router = Router();
  if (metrics) router.get('/metrics', metricsHandler(metrics));
  router.get('/healthz', (_req, res) => {
    res.json({ ok: true });
  });
  router.get('/readyz', async (_req, res) => {
    // Commands queue while Redis is away (maxRetriesPerRequest: null), so bound the ping.
    const ok =
      redis.status === 'ready' &&
      (await Promise.race([
        redis.ping().then(
          () => true,
          () => false,
        ),
        new Promise<boolean>((r) => setTimeout(r, 1_000, false).unref()),
      ]));
    res.status(ok ? 200 : 503).json({ ok, redis: ok ? 'reachable' : 'unreachable' });
  });
  return router;
}
