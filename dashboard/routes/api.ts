import { Router } from 'express';
import { listRuns, readRunStatus } from '../../shared/run/status.js';
import { readQueueDepth } from '../queue-depth.js';
import { MAX_PAGE_ROWS, TABLES, tablePage, type Table } from '../run-view.js';
import { runParam, type RouteContext } from './context.js';

/** The live page's reads, to mount at `/api`: info, runs, queue depth, a run's status and rows, the event stream. */
export function apiRoutes({ config, redis, queues, live }: RouteContext): Router {
  const queue = config.queue;
  const app = Router();
  app.get('/info', (_req, res) => {
    res.json({
      queue,
      shards: queues.map((q, index) => ({ index, name: q.name })),
      readOnly: config.readOnly,
      actions: !config.readOnly,
      access: config.access.kind,
      historyMs: config.historyMs,
      // The run shown when the page names none (RUN_ID), else null: the latest.
      defaultRun: config.runId ?? null,
    });
  });
  app.get('/runs', async (_req, res) => {
    res.json(await listRuns(redis, queue));
  });
  app.get('/queue', async (_req, res) => {
    res.json({ queue, ...(await readQueueDepth(queues)) });
  });
  app.get('/status', async (req, res) => {
    const asked = runParam(req);
    if (asked === null) {
      res.status(400).json({ error: '?run= must be a run id (letters, digits, "_", "." or "-")' });
      return;
    }
    const runId = asked ?? config.runId ?? (await listRuns(redis, queue, 1))[0];
    const status = runId === undefined ? null : await readRunStatus(redis, queue, runId, config.leaseMs);
    if (!status) {
      res.status(404).json({ error: `no run ${runId ? `"${runId}" ` : ''}on queue "${queue}"` });
      return;
    }
    res.json(status);
  });
  // A page of a run's producers or consumers (the stream carries the first): from the watched run's
  // last reading when a page watches it, so paging through a big run costs Redis nothing.
  app.get('/rows', async (req, res) => {
    const runId = runParam(req);
    const table = req.query.table;
    const offset = Number(req.query.offset ?? 0);
    const limit = Number(req.query.limit ?? 50);
    if (!runId) {
      res.status(400).json({ error: '?run= must be a run id' });
      return;
    }
    if (typeof table !== 'string' || !TABLES.includes(table as Table)) {
      res.status(400).json({ error: `?table= must be one of ${TABLES.join(', ')}` });
      return;
    }
    if (
      !Number.isInteger(offset) ||
      offset < 0 ||
      !Number.isInteger(limit) ||
      limit < 1 ||
      limit > MAX_PAGE_ROWS
    ) {
      res
        .status(400)
        .json({ error: `?offset= must be a whole number from 0, ?limit= one from 1 to ${MAX_PAGE_ROWS}` });
      return;
    }
    const status = live.watchedStatus(runId) ?? (await readRunStatus(redis, queue, runId, config.leaseMs));
    if (!status) {
      res.status(404).json({ error: `no run "${runId}" on queue "${queue}"` });
      return;
    }
    res.json(tablePage(status, table as Table, offset, limit));
  });
  app.get('/events', async (req, res) => {
    const asked = runParam(req);
    if (asked === null) {
      res.status(400).json({ error: '?run= must be a run id' });
      return;
    }
    await live.subscribe(asked ?? '', res);
  });

  return app;
}
