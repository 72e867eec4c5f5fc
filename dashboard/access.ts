import { createHash, timingSafeEqual } from 'node:crypto';
import type { NextFunction, Request, RequestHandler, Response } from 'express';
import type { Logger } from '../shared/logger.js';
import type { DashboardAccess } from './config.js';
import { cspWithStyle } from './headers.js';
import type { LoginThrottle } from './login-throttle.js';
import type { Sessions } from './session.js';

/**
 * Cookie a browser gets after pasting the token on /login (EventSource cannot send a bearer header):
 * a session (session.ts), never the token itself.
 */
export const TOKEN_COOKIE = 'conveyor_token';

/** Header every action POST must carry: a cross-site form or image cannot set it without a CORS preflight. */
export const ACTION_HEADER = 'x-conveyor-action';

/** Compares through fixed-length digests, so neither the content nor the length leaks through timing. */
export function safeEqual(given: string, expected: string): boolean {
  const a = createHash('sha256').update(given).digest();
  const b = createHash('sha256').update(expected).digest();
  return timingSafeEqual(a, b);
}

export function cookie(req: Request, name: string): string | undefined {
  for (const part of (req.headers.cookie ?? '').split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === name) {
      try {
        return decodeURIComponent(part.slice(eq + 1).trim());
      } catch {
        return undefined;
      }
    }
  }
  return undefined;
}

/**
 * What the request's credentials are worth: `ok`; `none` (it carries none: a first visit, not a
 * guess); `wrong` (a failed attempt, counted by the throttle).
 */
export type Verdict = 'ok' | 'none' | 'wrong';

/** Checks the request's credentials against the configured ones. */
export function checkCredentials(req: Request, access: DashboardAccess, sessions?: Sessions): Verdict {
  const header = req.headers.authorization ?? '';
  switch (access.kind) {
    case 'open':
      return 'ok';
    case 'basic': {
      if (!/^basic /i.test(header)) return header ? 'wrong' : 'none';
      const decoded = Buffer.from(header.slice(6).trim(), 'base64').toString('utf8');
      const colon = decoded.indexOf(':');
      if (colon < 0) return 'wrong';
      // Both halves are always compared, so a wrong user takes as long as a wrong password.
      const userOk = safeEqual(decoded.slice(0, colon), access.user);
      const passOk = safeEqual(decoded.slice(colon + 1), access.password);
      return userOk && passOk ? 'ok' : 'wrong';
    }
    case 'token': {
      if (/^bearer /i.test(header)) return safeEqual(header.slice(7).trim(), access.token) ? 'ok' : 'wrong';
      if (header) return 'wrong';
      const session = cookie(req, TOKEN_COOKIE);
      if (session === undefined || !sessions) return 'none';
      const check = sessions.check(session);
      // An expired or logged-out session is no guess: the browser just needs to sign in again.
      return check === 'ok' ? 'ok' : check === 'over' ? 'none' : 'wrong';
    }
  }
}

/**
 * Counts failed attempts per client address (the throttle) and says so in the log; a client with a
 * wait to sit out gets 429 and `Retry-After` before its credentials are even checked.
 */
export type Gate = { throttle: LoginThrottle; log: Logger; sessions?: Sessions };

/** Refuses (429, with `Retry-After`) a client that has a wait to sit out; true when it did. */
export function throttled(req: Request, res: Response, gate: Gate): boolean {
  const waitMs = gate.throttle.waitMs(req.ip ?? '');
  if (waitMs <= 0) return false;
  res.setHeader('Retry-After', String(Math.ceil(waitMs / 1000)));
  res.status(429).json({ error: 'too many failed sign-ins from this address: wait and try again' });
  return true;
}

/** Records the outcome of a checked attempt: a failure is counted and logged, a success clears the count. */
export function recordAttempt(req: Request, verdict: Verdict, gate: Gate): void {
  const ip = req.ip ?? '';
  if (verdict === 'ok') gate.throttle.succeeded(ip);
  if (verdict !== 'wrong') return;
  const { failures, waitMs } = gate.throttle.failed(ip);
  // Never the credentials: only who, where, and how many times.
  gate.log.warn({ ip, path: req.path, failures, waitMs }, 'dashboard login failed');
}

/** Refuses every request without the configured credentials (401), except the paths in `open`. */
export function requireAccess(access: DashboardAccess, open: readonly string[], gate: Gate): RequestHandler {
  return (req: Request, res: Response, next: NextFunction) => {
    if (access.kind === 'open' || open.includes(req.path)) {
      next();
      return;
    }
    const presented = req.headers.authorization !== undefined || cookie(req, TOKEN_COOKIE) !== undefined;
    if (presented && throttled(req, res, gate)) return;
    const verdict = checkCredentials(req, access, gate.sessions);
    recordAttempt(req, verdict, gate);
    if (verdict === 'ok') {
      next();
      return;
    }
    if (access.kind === 'basic') res.setHeader('WWW-Authenticate', 'Basic realm="conveyor", charset="UTF-8"');
    else res.setHeader('WWW-Authenticate', 'Bearer realm="conveyor"');
    const wantsHtml = req.method === 'GET' && (req.headers.accept ?? '').includes('text/html');
    if (access.kind === 'token' && wantsHtml) {
      sendLoginPage(res, 401, false);
      return;
    }
    res.status(401).json({ error: 'unauthorised: this dashboard needs credentials' });
  };
}

const LOGIN_STYLE =
  'body{font:15px system-ui,sans-serif;max-width:26rem;margin:4rem auto;color:#222}input,button{font:inherit;padding:.4rem;width:100%;box-sizing:border-box;margin:.3rem 0}';
const LOGIN_CSP = cspWithStyle(LOGIN_STYLE);

/** The form a browser user pastes the token into; posts to /login. */
export function loginPage(failed: boolean): string {
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>conveyor: sign in</title>
<style>${LOGIN_STYLE}</style>
</head><body><h1>conveyor dashboard</h1>${failed ? '<p role="alert">That token is not right.</p>' : ''}
<form method="post" action="/login"><label>Access token (DASHBOARD_TOKEN)<input type="password" name="token" autocomplete="current-password" autofocus></label><button>Sign in</button></form></body></html>`;
}

/** The sign-in page, with the CSP that lets its one inline style through. */
export function sendLoginPage(res: Response, status: number, failed: boolean): void {
  res.status(status).set('Content-Security-Policy', LOGIN_CSP).type('html').send(loginPage(failed));
}

/**
 * Whether `origin` names the host this request was addressed to. Only the host is compared: behind a
 * TLS-terminating proxy the browser says https while this server sees http.
 */
function isOwnOrigin(origin: string, req: Request): boolean {
  if (!URL.canParse(origin)) return false;
  const host = req.headers.host;
  return host !== undefined && new URL(origin).host === host;
}

/**
 * Refuses state-changing requests from another site: when the browser says where the request came
 * from (Origin, else Referer), it must be this dashboard. Safe methods pass.
 */
export function sameOriginWrites(): RequestHandler {
  return (req, res, next) => {
    if (req.method === 'GET' || req.method === 'HEAD' || req.method === 'OPTIONS') {
      next();
      return;
    }
    const origin = req.headers.origin;
    const referer = req.headers.referer;
    let from: string | undefined;
    if (origin !== undefined) from = origin;
    else if (referer !== undefined) from = URL.canParse(referer) ? new URL(referer).origin : 'invalid';
    if (from !== undefined && !isOwnOrigin(from, req)) {
      res.status(403).json({ error: 'cross-site request refused' });
      return;
    }
    next();
  };
}

/** Actions additionally need the custom header (a cross-site page cannot add it without CORS, which we never grant). */
export function requireActionHeader(): RequestHandler {
  return (req, res, next) => {
    if (req.headers[ACTION_HEADER] === undefined) {
      res.status(403).json({ error: `actions need the ${ACTION_HEADER} header` });
      return;
    }
    next();
  };
}
