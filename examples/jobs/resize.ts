// jobs/resize.ts
import { defineJob, UnrecoverableError, z } from 'conveyor';

export const resize = defineJob({
  name: 'resize',
  schema: z.strictObject({ url: z.url(), width: z.number().int().positive() }),
  // Made once per consumer process and handed to every job (a client, a pool...); disposed at exit.
  createResources: () => ({ seen: new Map<string, number>() }),
  disposeResources: ({ seen }) => seen.clear(),
  handler: async ({ url, width }, { resources, signal, attempt, log }) => {
    const res = await fetch(url, { signal });
    // Throw to fail this attempt (retried per ATTEMPTS); throw UnrecoverableError to fail at once.
    if (res.status >= 400 && res.status < 500) throw new UnrecoverableError(`GET ${url}: HTTP ${res.status}`);
    if (!res.ok) throw new Error(`GET ${url}: HTTP ${res.status}`);
    const bytes = (await res.arrayBuffer()).byteLength;
    resources.seen.set(url, bytes);
    log.info({ url, width, bytes, attempt }, 'resized');
    return { url, width, bytes };
  },
});
