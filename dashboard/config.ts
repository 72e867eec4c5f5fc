import { z } from 'zod';
import {
  bool,
  commonShape,
  ConfigError,
  int,
  optionalName,
  parseEnv,
  text,
  toCommonConfig,
  type Env,
} from '../shared/config.js';
import { AUTO_RUN_ID } from '../shared/run/current-run.js';
import { parseAllowedHosts, type AllowedHosts } from './hosts.js';
import { parseTrustProxy, type TrustProxy } from './trust-proxy.js';

const secret = () =>
  z.preprocess((v) => (typeof v === 'string' && v === '' ? undefined : v), z.string().optional());

const shape = {
  ...commonShape,
  DASHBOARD_PORT: int(3000, 0, 65_535),
  DASHBOARD_HOST: text(''),
  /** Host names served beyond localhost and IP addresses (DNS-rebinding defence). */
  DASHBOARD_HOSTS: text(''),
  DASHBOARD_READONLY: bool(false),
  DASHBOARD_USER: secret(),
  DASHBOARD_PASSWORD: secret(),
  DASHBOARD_TOKEN: secret(),
  /** How often each watched run is read for the live page. */
  DASHBOARD_POLL_MS: int(500, 50, 60_000),
  /** Proxies whose X-Forwarded-For/-Proto are believed (the client's address, https for Secure cookies). */
  DASHBOARD_TRUST_PROXY: text(''),
  /** How long a browser sign-in with DASHBOARD_TOKEN lasts. */
  DASHBOARD_SESSION_HOURS: int(12, 1, 720),
  /** Runs the live page may watch at once (each read every DASHBOARD_POLL_MS while watched). */
  DASHBOARD_MAX_WATCHED_RUNS: int(20, 1, 1_000),
  /** How much depth history the live chart keeps. */
  DASHBOARD_HISTORY_S: int(600, 10, 86_400),
  /** The run shown when the page names none; default: the latest. */
  RUN_ID: optionalName(),
};

/** Who may use the dashboard: nobody checked (loopback only), basic auth, or a bearer token. */
export type DashboardAccess =
  { kind: 'open' } | { kind: 'basic'; user: string; password: string } | { kind: 'token'; token: string };

export type DashboardConfig = ReturnType<typeof loadDashboardConfig>;

const LOOPBACK = new Set(['127.0.0.1', '::1', 'localhost']);

/** Dashboard settings from the environment; throws ConfigError naming each bad variable. */
export function loadDashboardConfig(env: Env) {
  const e = parseEnv(shape, env);
  const problems: string[] = [];
  let access: DashboardAccess = { kind: 'open' };
  if (
    e.DASHBOARD_TOKEN !== undefined &&
    (e.DASHBOARD_USER !== undefined || e.DASHBOARD_PASSWORD !== undefined)
  ) {
    problems.push(
      'DASHBOARD_TOKEN: set either DASHBOARD_TOKEN or DASHBOARD_USER/DASHBOARD_PASSWORD, not both',
    );
  } else if (e.DASHBOARD_TOKEN !== undefined) {
    if (e.DASHBOARD_TOKEN.length < 16)
      problems.push('DASHBOARD_TOKEN: must be at least 16 characters (got <hidden>)');
    access = { kind: 'token', token: e.DASHBOARD_TOKEN };
  } else if (e.DASHBOARD_USER !== undefined || e.DASHBOARD_PASSWORD !== undefined) {
    if (!e.DASHBOARD_USER) problems.push('DASHBOARD_USER: required when DASHBOARD_PASSWORD is set');
    else if (e.DASHBOARD_USER.includes(':'))
      problems.push('DASHBOARD_USER: must not contain ":" (basic auth)');
    if (!e.DASHBOARD_PASSWORD)
      problems.push('DASHBOARD_PASSWORD: required when DASHBOARD_USER is set (got <hidden>)');
    // The same strength as a token: failed sign-ins are slowed, but a short password is still guessed.
    else if (e.DASHBOARD_PASSWORD.length < 16)
      problems.push(
        'DASHBOARD_PASSWORD: must be at least 16 characters, as DASHBOARD_TOKEN (got <hidden>); a passphrase of four words or 16 random characters will do',
      );
    access = { kind: 'basic', user: e.DASHBOARD_USER ?? '', password: e.DASHBOARD_PASSWORD ?? '' };
  }
  // This machine only unless DASHBOARD_HOST says otherwise, credentials or not: publishing is a choice.
  const host = e.DASHBOARD_HOST.trim() || '127.0.0.1';
  // Without credentials, cancel buttons must not be reachable from another machine.
  if (access.kind === 'open' && !LOOPBACK.has(host)) {
    problems.push(
      `DASHBOARD_HOST: "${host}" would expose an unauthenticated dashboard; set DASHBOARD_USER/DASHBOARD_PASSWORD ` +
        'or DASHBOARD_TOKEN, or leave DASHBOARD_HOST unset (127.0.0.1)',
    );
  }
  const allowedHosts = parseAllowedHosts(e.DASHBOARD_HOSTS);
  if (typeof allowedHosts === 'string') problems.push(`DASHBOARD_HOSTS: ${allowedHosts}`);
  const trustProxy = parseTrustProxy(e.DASHBOARD_TRUST_PROXY);
  if (typeof trustProxy === 'string') problems.push(`DASHBOARD_TRUST_PROXY: ${trustProxy}`);
  if (problems.length) throw new ConfigError(problems);
  return {
    ...toCommonConfig(e),
    port: e.DASHBOARD_PORT,
    host,
    readOnly: e.DASHBOARD_READONLY,
    access,
    allowedHosts: allowedHosts as AllowedHosts,
    trustProxy: trustProxy as TrustProxy,
    sessionMs: e.DASHBOARD_SESSION_HOURS * 3_600_000,
    pollMs: e.DASHBOARD_POLL_MS,
    maxWatchedRuns: e.DASHBOARD_MAX_WATCHED_RUNS,
    historyMs: e.DASHBOARD_HISTORY_S * 1000,
    // RUN_ID=auto (compose's default) names no fixed run: show the latest.
    runId: e.RUN_ID === AUTO_RUN_ID ? undefined : e.RUN_ID,
  };
}
