import type { IncomingMessage, ServerResponse } from 'node:http';
import { loadDashboardConfig } from '../dashboard/config.js';
import { openDashboard } from '../dashboard/open.js';
import { startServer } from '../dashboard/server.js';
import { loggerFor, parseOptions, type ConnectionOptions } from './options.js';

export type DashboardOptions = ConnectionOptions & {
  /** Default 3000; 0 = any free port. */
  port?: number;
  /** Default 127.0.0.1 (0.0.0.0 needs `user`+`password` or `token`). */
  host?: string;
  /**
   * Host names the dashboard answers for besides localhost and IP addresses (`.example.com`: a domain
   * and its subdomains); a request addressed to any other name is refused (DNS rebinding).
   */
  hosts?: string[];
  user?: string;
  password?: string;
  token?: string;
  readOnly?: boolean;
  /** The run shown when the page names none (default: the latest). */
  runId?: string;
};

/** A Node request listener (an Express app), so the public types need no Express types. */
export type RequestHandler = (
  req: IncomingMessage,
  res: ServerResponse,
  next?: (err?: unknown) => void,
) => void;

export type DashboardHandle = {
  /**
   * The dashboard as an Express app: `http.createServer(app)`, or `yourApp.use('/conveyor', app)`;
   * or use `startDashboard` to listen.
   */
  app: RequestHandler;
  /** Stops the pollers and closes the connections. */
  close(): Promise<void>;
};

function buildDashboard(opts: DashboardOptions) {
  const config = parseOptions(loadDashboardConfig, opts, {
    DASHBOARD_PORT: ['port', opts.port],
    DASHBOARD_HOST: ['host', opts.host],
    DASHBOARD_HOSTS: ['hosts', opts.hosts?.join(',')],
    DASHBOARD_USER: ['user', opts.user],
    DASHBOARD_PASSWORD: ['password', opts.password],
    DASHBOARD_TOKEN: ['token', opts.token],
    DASHBOARD_READONLY: ['readOnly', opts.readOnly],
    RUN_ID: ['runId', opts.runId],
  });
  const { dashboard, close } = openDashboard(config, { log: loggerFor(opts, 'dashboard') });
  return { config, dashboard, close };
}

/** The live page, Bull Board at /queues and /api/status, as an Express app you can mount. */
export function createDashboard(opts: DashboardOptions = {}): DashboardHandle {
  const { dashboard, close } = buildDashboard(opts);
  return { app: dashboard.app, close };
}

/** `createDashboard` listening on `host:port`; `url` is where it answers. */
export async function startDashboard(
  opts: DashboardOptions = {},
): Promise<{ url: string; port: number; close(): Promise<void> }> {
  const { config, dashboard, close } = buildDashboard(opts);
  try {
    const server = await startServer(dashboard, { host: config.host, port: config.port });
    return {
      url: server.url,
      port: server.port,
      close: async () => {
        await server.close();
        await close();
      },
    };
  } catch (err) {
    await close();
    throw err;
  }
}
