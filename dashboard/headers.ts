import { createHash } from 'node:crypto';
import type { RequestHandler } from 'express';

/** conveyor's own responses: nothing inline, nothing from elsewhere, never framed. */
export const PAGE_CSP =
  "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
  "frame-ancestors 'none'; form-action 'self'; base-uri 'none'; object-src 'none'";

/**
 * Bull Board's page: its scripts come from its own static files (no inline script, no eval), but
 * React sets inline styles and the page has a <base href>.
 */
export const BOARD_CSP =
  "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; " +
  "font-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'self'; " +
  "object-src 'none'";

/** PAGE_CSP allowing one inline <style> by its hash (the sign-in page, served before any asset may be). */
export function cspWithStyle(style: string): string {
  const hash = createHash('sha256').update(style).digest('base64');
  return PAGE_CSP.replace("style-src 'self'", `style-src 'self' 'sha256-${hash}'`);
}

/**
 * Headers on every response: the strict CSP (routes that need another replace it), no caching (every
 * answer but the static assets is per user and per moment), no sniffing, no framing, no referrer
 * beyond this site.
 */
export function securityHeaders(): RequestHandler {
  return (_req, res, next) => {
    res.set({
      'Content-Security-Policy': PAGE_CSP,
      'Cache-Control': 'no-store',
      'X-Content-Type-Options': 'nosniff',
      'X-Frame-Options': 'DENY',
      'Referrer-Policy': 'same-origin',
    });
    next();
  };
}
