import express, { Router, type Request, type Response } from 'express';
import {
  checkCredentials,
  cookie,
  recordAttempt,
  sendLoginPage,
  throttled,
  TOKEN_COOKIE,
  type Gate,
} from '../access.js';
import type { Sessions } from '../session.js';
import { BODY_LIMIT } from './context.js';

/**
 * The token form's POST /login (a signed session cookie for the right token) and POST /logout (the
 * session revoked, the cookie cleared). Both are open paths: /logout so a browser whose session is
 * already over can still clear its cookie.
 */
export function signInRoutes(
  access: { kind: 'token'; token: string },
  sessions: Sessions,
  gate: Gate,
  sessionMs: number,
): Router {
  const router = Router();
  router.post(
    '/login',
    express.urlencoded({ extended: false, limit: BODY_LIMIT }),
    (req: Request, res: Response) => {
      if (throttled(req, res, gate)) return;
      const token = (req.body as Record<string, unknown> | undefined)?.token;
      const fake = {
        headers: { authorization: `Bearer ${typeof token === 'string' ? token : ''}` },
      } as Request;
      const verdict = checkCredentials(fake, access);
      recordAttempt(req, verdict, gate);
      if (verdict !== 'ok') {
        sendLoginPage(res, 401, true);
        return;
      }
      res.cookie(TOKEN_COOKIE, sessions.issue(), {
        httpOnly: true,
        sameSite: 'strict',
        secure: req.secure,
        path: '/',
        maxAge: sessionMs,
      });
      res.redirect(303, '/');
    },
  );
  router.post('/logout', (req: Request, res: Response) => {
    const session = cookie(req, TOKEN_COOKIE);
    if (session) sessions.revoke(session);
    res.clearCookie(TOKEN_COOKIE, { httpOnly: true, sameSite: 'strict', secure: req.secure, path: '/' });
    res.redirect(303, '/');
  });
  return router;
}
