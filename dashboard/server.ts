import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Dashboard } from './app.js';

export type RunningServer = {
  url: string;
  port: number;
  server: Server;
  /** Ends the event streams, stops accepting connections and waits for open requests. Safe to call twice. */
  close(): Promise<void>;
};

/** Listens on `host:port` (0 = any free port) and resolves once the socket is bound. */
export function startServer(
  dashboard: Dashboard,
  opts: { host: string; port: number },
): Promise<RunningServer> {
  return new Promise((resolve, reject) => {
    const server = dashboard.app.listen(opts.port, opts.host);
    server.once('error', reject);
    server.once('listening', () => {
      server.off('error', reject);
      const { port } = server.address() as AddressInfo;
      const shown =
        opts.host === '0.0.0.0' || opts.host === '::'
          ? 'localhost'
          : opts.host.includes(':')
            ? `[${opts.host}]`
            : opts.host;
      let closing: Promise<void> | undefined;
      resolve({
        url: `http://${shown}:${port}`,
        port,
        server,
        close: () =>
          (closing ??= new Promise<void>((done) => {
            // Event streams never end by themselves: end them first, then drop idle keep-alive sockets.
            dashboard.close();
            server.close(() => done());
            server.closeIdleConnections();
          })),
      });
    });
  });
}
