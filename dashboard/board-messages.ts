import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import type { RequestHandler } from 'express';

/**
 * What Bull Board's empty metrics chart says instead of its own advice (set BullMQ's `metrics` worker
 * option), which a conveyor user cannot follow: conveyor's consumers set that option themselves.
 */
export const QUEUE_METRICS_HINT =
  'No metrics collected yet. conveyor records them when its consumers run with QUEUE_METRICS=true ' +
  '(docker compose sets it); it costs some Redis work per finished job.';

/** Where Bull Board's page looks up its text, per language (`/queues/static/locales/<lng>/messages.json`). */
export const BOARD_MESSAGES_PATH = /^\/static\/locales\/([A-Za-z]{2}-[A-Za-z]{2})\/messages\.json$/;

// As @bull-board/api finds the UI it serves.
const localesDir = join(
  dirname(createRequire(import.meta.url).resolve('@bull-board/ui/package.json')),
  'dist',
  'static',
  'locales',
);

/**
 * Serves Bull Board's messages with the empty metrics text replaced by QUEUE_METRICS_HINT (in every
 * language: the setting's name is the part that matters). Mounted under Bull Board's base path,
 * before Bull Board; other paths, and languages Bull Board lacks, fall through to it.
 */
export function boardMessages(): RequestHandler {
  const cache = new Map<string, Promise<string | null>>();
  const load = (lng: string) =>
    readFile(join(localesDir, lng, 'messages.json'), 'utf8').then(
      (text) => {
        const messages = JSON.parse(text) as { METRICS?: Record<string, string> };
        messages.METRICS = { ...messages.METRICS, EMPTY: QUEUE_METRICS_HINT };
        return JSON.stringify(messages);
      },
      () => null,
    );
  return (req, res, next) => {
    const lng = BOARD_MESSAGES_PATH.exec(req.path)?.[1];
    if (!lng || req.method !== 'GET') {
      next();
      return;
    }
    if (!cache.has(lng)) cache.set(lng, load(lng));
    cache.get(lng)!.then(
      (body) => {
        if (body === null) next();
        else res.type('application/json').send(body);
      },
      (err: unknown) => next(err),
    );
  };
}
