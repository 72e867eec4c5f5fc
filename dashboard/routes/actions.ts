import express, { Router, type Request, type Response } from 'express';
import { nameSchema } from '../../shared/config.js';
import { RunStore } from '../../shared/run/run-store.js';
import { requireActionHeader } from '../access.js';
import { BODY_LIMIT, type RouteContext } from './context.js';

/** The cancel actions, to mount at `/api/actions`: POSTs with the action header, refused when read-only. */
export function actionRoutes({ config, redis, queues, log }: RouteContext): Router {
  const queue = config.queue;
  const actions = Router();
  actions.use(requireActionHeader(), express.json({ limit: BODY_LIMIT }), (_req, res, next) => {
    if (config.readOnly)
      res.status(403).json({ error: 'this dashboard is read-only (DASHBOARD_READONLY=true)' });
    else next();
  });
  const actionTarget = async (
    req: Request,
    res: Response,
  ): Promise<{ run: RunStore; reason: string } | null> => {
    const body = (req.body ?? {}) as Record<string, unknown>;
    const runId = typeof body.run === 'string' ? body.run : '';
    if (!nameSchema.safeParse(runId).success) {
      res.status(400).json({ error: '"run" must be a run id' });
      return null;
    }
    const run = new RunStore(redis, queue, runId, queues.length);
    if (!(await run.exists())) {
      res.status(404).json({ error: `no run "${runId}" on queue "${queue}"` });
      return null;
    }
    const reason =
      typeof body.reason === 'string' && body.reason.trim()
        ? body.reason.trim().slice(0, 200)
        : 'cancelled from the dashboard';
    return { run, reason };
  };
  actions.post('/cancel-consumer', async (req, res) => {
    const target = await actionTarget(req, res);
    if (!target) return;
    const consumer = (req.body as Record<string, unknown>).consumer;
    if (typeof consumer !== 'string' || !nameSchema.safeParse(consumer).success) {
      res.status(400).json({ error: '"consumer" must be a consumer id' });
      return;
    }
    if ((await redis.hexists(target.run.keys.consumers, consumer)) !== 1) {
      res.status(404).json({ error: `no consumer "${consumer}" in run "${target.run.runId}"` });
      return;
    }
    await target.run.requestCancel(consumer, target.reason);
    log.info(
      { runId: target.run.runId, consumerId: consumer, reason: target.reason },
      'consumer cancel requested',
    );
    res.status(202).json({ ok: true, run: target.run.runId, consumer });
  });
  actions.post('/cancel-run', async (req, res) => {
    const target = await actionTarget(req, res);
    if (!target) return;
    const r = await target.run.cancel({
      by: `the dashboard (from ${req.ip ?? 'an unknown address'})`,
      reason: target.reason,
    });
    log.info({ runId: target.run.runId, reason: target.reason, ...r }, 'run cancel requested');
    // A joined run is left as it is, and the answer says so.
    res.status(r.outcome === 'joined' ? 200 : 202).json({ ok: true, run: target.run.runId, ...r });
  });
  actions.post('/cancel-job', async (req, res) => {
    const target = await actionTarget(req, res);
    if (!target) return;
    const job = (req.body as Record<string, unknown>).job;
    if (typeof job !== 'string' || !/^[\w.~+=@-]{1,200}$/.test(job)) {
      res.status(400).json({ error: '"job" must be a job id' });
      return;
    }
    const r = await target.run.cancelJob(job);
    log.info({ runId: target.run.runId, jobId: job, reason: target.reason, ...r }, 'job cancel requested');
    if (r.outcome === 'unknown') {
      res.status(404).json({ error: `no job "${job}" in run "${target.run.runId}"` });
      return;
    }
    const done = r.outcome === 'finished' || r.outcome === 'joined';
    res.status(done ? 200 : 202).json({ ok: true, run: target.run.runId, job, outcome: r.outcome });
  });
  return actions;
}
