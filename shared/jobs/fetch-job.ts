import http from 'node:http';
import https from 'node:https';
import { UnrecoverableError } from 'bullmq';
import { z } from 'zod';
import { defineJob } from './define.js';

type Agents = { http: http.Agent; https: https.Agent };

const REQUEST_TIMEOUT_MS = 30_000;

/**
 * GET a URL and measure the body. An HTTP error fails the attempt (so
 * it is retried per ATTEMPTS); a 4xx other than 408 and 429 fails the job at once. One keep-alive agent pair per consumer
 * process shares one HTTP client (keep-alive connections) across its jobs.
 */
export const fetchJob = defineJob({
  name: 'fetch',
  schema: z.strictObject({
    url: z
      .string()
      .max(2_048)
      .refine((v) => URL.canParse(v) && /^https?:$/.test(new URL(v).protocol), 'must be an http(s) URL'),
  }),
  createResources: (): Agents => ({
    http: new http.Agent({ keepAlive: true, maxSockets: 64 }),
    https: new https.Agent({ keepAlive: true, maxSockets: 64 }),
  }),
  disposeResources: (agents) => {
    agents.http.destroy();
    agents.https.destroy();
  },
  handler: ({ url }, { resources, signal }) => get(url, resources, signal),
});

function get(
  url: string,
  agents: Agents,
  signal: AbortSignal,
): Promise<{ url: string; status: number; bytes: number }> {
  const secure = url.startsWith('https:');
  const request = secure ? https.get : http.get;
  return new Promise((resolve, reject) => {
    const req = request(
      url,
      { agent: secure ? agents.https : agents.http, signal, timeout: REQUEST_TIMEOUT_MS },
      (res) => {
        let bytes = 0;
        res.on('data', (chunk: Buffer) => (bytes += chunk.length));
        res.on('end', () => {
          const status = res.statusCode ?? 0;
          if (status < 400) return resolve({ url, status, bytes });
          const message = `GET ${url}: HTTP ${status} (${bytes} bytes)`;
          // A client error stays one whatever the retry, except a timeout (408) or a rate limit (429).
          reject(
            status < 500 && status !== 408 && status !== 429
              ? new UnrecoverableError(message)
              : new Error(message),
          );
        });
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error(`GET ${url} timed out after ${REQUEST_TIMEOUT_MS} ms`)));
    req.on('error', reject);
  });
}
