import { createBullBoard } from '@bull-board/api';
import { BullMQAdapter } from '@bull-board/api/bullMQAdapter';
import { ExpressAdapter } from '@bull-board/express';
import type express from 'express';
import { Router } from 'express';
import { boardMessages } from '../board-messages.js';
import { BOARD_CSP } from '../headers.js';
import type { RouteContext } from './context.js';

/** Bull Board's page asks Google for its fonts; offline installs saw a failed request, so the link goes. */
const REMOTE_FONTS = /<link[^>]*\/\/fonts\.(googleapis|gstatic)\.com[^>]*>\s*/g;

/** Bull Board renders its page with `res.render`: drop the remote font links from what it renders. */
const withoutRemoteFonts: express.RequestHandler = (_req, res, next) => {
  const render = res.render.bind(res);
  res.render = (view: string, options?: object) =>
    render(view, options ?? {}, (err: Error | null, html?: string) => {
      if (err) next(err);
      else res.send((html ?? '').replace(REMOTE_FONTS, ''));
    });
  next();
};

/** Bull Board for every shard of the queue, to mount at `/queues`: its CSP, no remote fonts, conveyor's metrics text. */
export function boardRoutes({ config, queues }: RouteContext): Router {
  const queue = config.queue;
  const board = new ExpressAdapter();
  board.setBasePath('/queues');
  createBullBoard({
    // Bull Board keys each adapter by its BullMQ queue name, which differs per shard (`q#0`, `q#1`...).
    queues: queues.map(
      (q, i) =>
        new BullMQAdapter(q, {
          readOnlyMode: config.readOnly,
          allowRetries: !config.readOnly,
          description: queues.length > 1 ? `shard ${i} of ${queues.length} of conveyor queue "${queue}"` : '',
        }),
    ),
    serverAdapter: board,
    options: { uiConfig: { boardTitle: 'conveyor', showMetrics: true, hideDocsLink: true } },
  });
  const boardApp = board.getRouter() as express.Express;
  // Bull Board's router is an Express app of its own, which announces itself unless told not to.
  boardApp.disable('x-powered-by');
  return Router().use(
    (_req, res, next) => {
      res.set('Content-Security-Policy', BOARD_CSP);
      next();
    },
    withoutRemoteFonts,
    boardMessages(),
    boardApp,
  );
}
