import { isIP } from 'node:net';
import type { RequestHandler } from 'express';
import type { Logger } from '../shared/logger.js';

/**
 * The host names the dashboard answers for, beyond those it always answers for: `localhost` (and
 * names under `.localhost`) and any IP address. An entry `.example.com` allows example.com and every
 * name under it.
 */
export type AllowedHosts = { names: readonly string[]; suffixes: readonly string[] };

/** A DNS name as it may stand in a Host header (letters, digits, hyphens, dots; no trailing dot). */
const NAME = /^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/;

/**
 * Reads DASHBOARD_HOSTS (comma-separated names, `.suffix` for a domain and its subdomains). Returns
 * the list, or a sentence saying which entry is not a host name.
 */
export function parseAllowedHosts(text: string): AllowedHosts | string {
  const names: string[] = [];
  const suffixes: string[] = [];
  for (const raw of text
    .split(',')
    .map((s) => s.trim().toLowerCase())
    .filter(Boolean)) {
    const suffix = raw.startsWith('.');
    const name = (suffix ? raw.slice(1) : raw).replace(/\.$/, '');
    if (name.includes(':'))
      return `"${raw}" carries a port or is an IPv6 address: list host names only (IP addresses are always served, on any port)`;
    if (raw === '*' || !NAME.test(name))
      return `"${raw}" is not a host name (letters, digits, "-" and ".", or ".example.com" for a domain and its subdomains)`;
    // A bare top-level suffix (".com") would let anyone who buys a name under it rebind to the dashboard.
    if (suffix && !name.includes('.'))
      return `"${raw}" would allow every name under a top-level domain: name your own domain (".example.com")`;
    (suffix ? suffixes : names).push(name);
  }
  return { names, suffixes };
}

/** The host name of a Host header value (`name[:port]`, `[v6][:port]`), lower case; null when malformed. */
export function hostNameOf(header: string | undefined): string | null {
  if (!header) return null;
  const m = /^(\[[0-9a-f:.]+\]|[^\s/\\@?#[\]:]+)(:\d{1,5})?$/i.exec(header);
  if (!m) return null;
  const host = m[1]!.toLowerCase();
  return host.startsWith('[') ? host.slice(1, -1) : host.replace(/\.$/, '');
}

/**
 * Whether the dashboard answers a request addressed to `host`. A DNS-rebinding page can only reach
 * the dashboard under a name its attacker controls; an IP address or `localhost` cannot be rebound
 * (browsers resolve `localhost` and `*.localhost` to loopback themselves), so those always pass.
 */
export function isAllowedHost(host: string, allowed: AllowedHosts): boolean {
  if (isIP(host) !== 0 || host === 'localhost' || host.endsWith('.localhost')) return true;
  if (allowed.names.includes(host)) return true;
  return allowed.suffixes.some((s) => host === s || host.endsWith(`.${s}`));
}

/** Host names refused so far, kept so each is logged once (bounded: a flood of names logs at most this many). */
const LOGGED_REFUSALS = 100;

/**
 * Refuses (403) every request whose Host header names a host the dashboard does not serve, before
 * any other handler: the defence against DNS rebinding, where a page from another site is
 * same-origin with the dashboard under the attacker's name.
 */
export function allowedHostsOnly(allowed: AllowedHosts, log: Logger): RequestHandler {
  const logged = new Set<string>();
  return (req, res, next) => {
    const host = hostNameOf(req.headers.host);
    if (host !== null && isAllowedHost(host, allowed)) {
      next();
      return;
    }
    if (logged.size < LOGGED_REFUSALS && !logged.has(host ?? '')) {
      logged.add(host ?? '');
      log.warn(
        { host: host ?? '(missing or malformed)' },
        'request for a host this dashboard does not serve refused; if it is yours, add it to DASHBOARD_HOSTS',
      );
    }
    res
      .status(403)
      .type('text/plain')
      .send(
        host === null
          ? 'This request has no valid Host header.\n'
          : `This dashboard does not answer for the host ${/^[a-z0-9.-]{1,253}$/.test(host) ? `"${host}"` : 'named'}. ` +
              'If you reach it under that name, add the name to DASHBOARD_HOSTS.\n',
      );
  };
}
