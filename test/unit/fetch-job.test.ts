import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { UnrecoverableError } from 'bullmq';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fetchJob } from '../../shared/jobs/fetch-job.js';

/** The built-in fetch job against a real local HTTP server answering with the status in the path. */
describe('fetch job', () => {
  let server: Server;
  let base: string;
  const agents = fetchJob.createResources!();
  const get = (path: string, attempt = 1) =>
    fetchJob.handler(
      { url: `${base}${path}` },
      {
        jobId: 'j',
        attempt,
        signal: new AbortController().signal,
        log: pino({ level: 'silent' }),
        resources: agents,
      },
    );

  beforeAll(async () => {
    server = createServer((req, res) => {
      const status = Number(/^\/(\d{3})/.exec(req.url ?? '')?.[1] ?? 200);
      res.writeHead(status).end('x'.repeat(42));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    await fetchJob.disposeResources!(agents);
    await new Promise((resolve) => server.close(resolve));
  });

  it('a 2xx completes with the status and the body size', async () => {
    await expect(get('/200')).resolves.toEqual({ url: `${base}/200`, status: 200, bytes: 42 });
  });

  it('a 5xx fails the attempt (retried per policy), naming the status and body size', async () => {
    const err = await get('/503').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(Error);
    expect(err).not.toBeInstanceOf(UnrecoverableError);
    expect((err as Error).message).toBe(`GET ${base}/503: HTTP 503 (42 bytes)`);
  });

  it('408 and 429 are worth retrying', async () => {
    for (const status of [408, 429]) {
      const err = await get(`/${status}`).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(Error);
      expect(err).not.toBeInstanceOf(UnrecoverableError);
    }
  });

  it('any other 4xx is unrecoverable: retrying cannot change the answer', async () => {
    for (const status of [400, 403, 404, 410]) {
      const err = await get(`/${status}`).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(UnrecoverableError);
      expect((err as Error).message).toBe(`GET ${base}/${status}: HTTP ${status} (42 bytes)`);
    }
  });
});
