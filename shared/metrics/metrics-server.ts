import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';

/**
 * A request handler that answers with the registry's metrics in Prometheus text format. Plain
 * `node:http` types, so it mounts on an Express app as well (`app.get('/metrics', handler)`).
 * A failed collection answers 500 with the reason, so the scrape shows as failed rather than empty.
 */
export function metricsHandler(registry: Registry): (req: IncomingMessage, res: ServerResponse) => void {
  return (_req, res) => {
    registry.metrics().then(
      (body) => {
        res.writeHead(200, { 'content-type': registry.contentType, 'cache-control': 'no-store' });
        res.end(body);
      },
      (err: unknown) => {
        res.writeHead(500, { 'content-type': 'text/plain; charset=utf-8' });
        res.end(`collecting metrics failed: ${err instanceof Error ? err.message : String(err)}\n`);
      },
    );
  };
}

export type MetricsServer = {
  /** The port actually bound (the OS's pick when asked for 0). */
  port: number;
  url: string;
  /** Stops listening and drops open connections. Safe to call twice. */
  close(): Promise<void>;
};

/**
 * Serves `GET /metrics`, and the probes an orchestrator asks: `/healthz` (200 while the process
 * answers at all) and `/readyz` (200 while `ready()` says so, else 503), on `host:port`; resolves
 * once listening.
 */
export async function startMetricsServer(opts: {
  registry: Registry;
  port: number;
  host: string;
  /** Whether the process is ready for work (connected, started, not stopping); always, if not given. */
  ready?: () => boolean;
}): Promise<MetricsServer> {
  const handle = metricsHandler(opts.registry);
  const server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    const read = req.method === 'GET' || req.method === 'HEAD';
    if (path === '/metrics' && read) return handle(req, res);
    if ((path === '/healthz' || path === '/readyz') && read) {
      const ok = path === '/healthz' || (opts.ready?.() ?? true);
      res.writeHead(ok ? 200 : 503, { 'content-type': 'application/json', 'cache-control': 'no-store' });
      res.end(JSON.stringify({ ok }));
      return;
    }
    res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' });
    res.end('Not found: metrics are served at /metrics, probes at /healthz and /readyz\n');
  });
  // Keep-alive connections from a scraper must not hold the process open after close().
  server.keepAliveTimeout = 5_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  const shownHost = opts.host.includes(':') ? `[${opts.host}]` : opts.host;
  let closing: Promise<void> | undefined;
  return {
    port,
    url: `http://${shownHost}:${port}/metrics`,
    close: () =>
      (closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      })),
  };
}
