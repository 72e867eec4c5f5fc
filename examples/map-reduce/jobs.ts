// jobs.ts: the map/reduce job types. Stage 1 counts words per chunk; its join callback starts stage 2,
// a run of one job that merges the counts and writes the top 20 words.
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { callbackPayload, defineJob, openProducer, RunError } from 'conveyor';
import { countWords, mergeCounts, topWords, type Counts } from './words.js';

/** Map: counts one chunk's words into `<outDir>/<job id>.json` (a retry rewrites the same file). */
export const countChunk = defineJob({
  name: 'count-chunk',
  schema: z.object({ text: z.string(), outDir: z.string() }),
  handler: async ({ text, outDir }, { jobId }) => {
    const counts = countWords(text);
    await mkdir(outDir, { recursive: true });
    await writeFile(join(outDir, `${jobId}.json`), JSON.stringify(counts));
    return Object.keys(counts).length;
  },
});

/** Reduce: merges every chunk's counts and writes the top 20 words to `outFile`. */
export const reduceCounts = defineJob({
  name: 'reduce-counts',
  schema: z.object({ inDir: z.string(), outFile: z.string(), chunks: z.number().int() }),
  handler: async ({ inDir, outFile, chunks }) => {
    const files = (await readdir(inDir)).filter((f) => f.endsWith('.json'));
    if (files.length !== chunks)
      throw new Error(`expected ${chunks} chunk counts in ${inDir}, found ${files.length}`);
    const total: Counts = {};
    for (const f of files) mergeCounts(total, JSON.parse(await readFile(join(inDir, f), 'utf8')) as Counts);
    const top = topWords(total, 20);
    await writeFile(outFile, JSON.stringify(top, null, 1));
    return top;
  },
});

/** Stage 1's join callback: opens stage 2 (`<run>-reduce`) and puts its one job. */
export const startReduce = defineJob({
  name: 'start-reduce',
  schema: callbackPayload(
    z.object({ redisUrl: z.string().optional(), queue: z.string(), workDir: z.string() }),
  ),
  handler: async ({ run, totals, payload: { redisUrl, queue, workDir } }) => {
    if (totals.failed > 0)
      throw new Error(`stage 1 (${run}) had ${totals.failed} failed chunks: not reducing`);
    const next = `${run}-reduce`;
    // The producer id is fixed: a retried callback registers again instead of waiting for a second producer.
    try {
      const producer = await openProducer({
        redisUrl,
        queue,
        runId: next,
        afterRun: run,
        producerId: 'reduce',
        jobs: [reduceCounts],
      });
      await producer.put(
        'reduce-counts',
        { inDir: join(workDir, 'counts'), outFile: join(workDir, 'top20.json'), chunks: totals.completed },
        { key: 'reduce' },
      );
      await producer.done();
    } catch (err) {
      // a retry of this callback after stage 2 was already started: nothing left to do
      if (!(err instanceof RunError && (err.code === 'finished' || err.code === 'joined'))) throw err;
    }
    return next;
  },
});

export const jobs = [countChunk, reduceCounts, startReduce];
