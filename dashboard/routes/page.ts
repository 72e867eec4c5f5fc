import { resolve } from 'node:path';
import express, { Router, type Request, type Response } from 'express';
import { projectRoot } from '../../shared/roles.js';

export const publicDir = resolve(projectRoot, 'dashboard', 'public');
const ASSETS = new Set(['/app.js', '/style.css', '/favicon.svg']);

/** The live page at `/` and its own files under `/assets`. */
export function pageRoutes(): Router {
  const app = Router();
  // The page itself carries the strict CSP and no-store (securityHeaders).
  const page = (_req: Request, res: Response) => {
    res.sendFile(resolve(publicDir, 'index.html'));
  };
  app.get('/', page);
  // Only the page's own files: index.html is served at / alone, with its CSP.
  app.use('/assets', (req, res, next) => {
    if (ASSETS.has(req.path)) next();
    else res.status(404).json({ error: 'no such asset' });
  });
  app.use(
    '/assets',
    express.static(publicDir, {
      index: false,
      fallthrough: false,
      cacheControl: false,
      // Revalidated each time (a new version shows at once), and never kept by a shared cache.
      setHeaders: (res) => res.setHeader('Cache-Control', 'private, no-cache'),
    }),
  );

  return app;
}
