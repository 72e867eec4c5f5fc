// main.ts: a two-stage map/reduce over a corpus it makes. N producers split the corpus into chunk
// jobs, M consumers count words per chunk; stage 1's join callback starts stage 2, which merges the
// counts and writes the top 20 words. Then the result is checked against a single-process count.
//   REDIS_URL=redis://127.0.0.1:6379 npx tsx examples/map-reduce/main.ts
// Settings: QUEUE (default map-reduce), WORK_DIR (default a temporary folder), PRODUCERS (3),
// CONSUMERS (2), LINES (6000), CHUNK_LINES (200).
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openProducer, openRun, startConsumer } from 'conveyor';
import { countChunk, jobs } from './jobs.js';
import { countWords, makeCorpus, topWords } from './words.js';

const env = process.env;
const num = (name: string, fallback: number) => {
  const v = Number(env[name] ?? fallback);
  if (!Number.isInteger(v) || v < 1) {
    console.error(`${name}: must be a whole number of at least 1 (got "${env[name]}")`);
    process.exit(2);
  }
  return v;
};
const where = { redisUrl: env.REDIS_URL, queue: env.QUEUE ?? 'map-reduce' };
const workDir = env.WORK_DIR ?? mkdtempSync(join(tmpdir(), 'map-reduce-'));
const producers = num('PRODUCERS', 3);
const consumers = num('CONSUMERS', 2);
const chunkLines = num('CHUNK_LINES', 200);
const corpusFile = join(workDir, 'corpus.txt');
writeFileSync(corpusFile, makeCorpus(num('LINES', 6_000)));

const stage1 = `wordcount-${Date.now()}`;
const stage2 = `${stage1}-reduce`;
// M consumers for stage 1, one for stage 2 (every consumer takes any job of the queue; its run only
// decides when it leaves). Stage 1's consumers leave once its callback, which starts stage 2, finished.
const workers = [
  ...(await Promise.all(
    Array.from({ length: consumers }, (_, i) =>
      startConsumer({ ...where, runId: stage1, consumerId: `count-${i + 1}`, jobs, concurrency: 2 }),
    ),
  )),
  await startConsumer({ ...where, runId: stage2, consumerId: 'reduce-1', jobs }),
];

// N producers, each putting every N-th chunk of the corpus.
const lines = readFileSync(corpusFile, 'utf8').trimEnd().split('\n');
const chunks: string[] = [];
for (let i = 0; i < lines.length; i += chunkLines) chunks.push(lines.slice(i, i + chunkLines).join('\n'));
const outDir = join(workDir, 'counts');
await Promise.all(
  Array.from({ length: producers }, async (_, p) => {
    const producer = await openProducer({
      ...where,
      runId: stage1,
      producers,
      producerId: `split-${p + 1}`,
      jobs,
      onJoin: { type: 'start-reduce', payload: { ...where, workDir } },
    });
    await producer.putMany(
      chunks
        .filter((_, i) => i % producers === p)
        .map((text) => ({ type: countChunk.name, payload: { text, outDir } })),
    );
    await producer.done();
  }),
);

const first = openRun({ ...where, runId: stage1 });
const s1 = await first.join({ timeoutMs: 120_000 });
console.log(
  `stage 1 ${stage1} joined: ${s1.jobs.completed} chunks counted by ${consumers} consumers, ${s1.jobs.failed} failed`,
);
const second = openRun({ ...where, runId: stage2 });
// Stage 2 does not exist yet: stage 1's join callback creates it, once a consumer runs that callback.
const s2 = await second.join({ timeoutMs: 120_000, existGraceMs: 60_000 });
console.log(`stage 2 ${stage2} (after ${s2.afterRun ?? '?'}) joined: ${s2.jobs.completed} reduce job`);
await Promise.all(workers.map((w) => w.exited));
await Promise.all([first.close(), second.close()]);

const top = JSON.parse(readFileSync(join(workDir, 'top20.json'), 'utf8')) as [string, number][];
console.log('top 20 words:');
for (const [i, [word, n]] of top.entries())
  console.log(`${String(i + 1).padStart(3)}. ${word.padEnd(10)} ${n}`);
const single = topWords(countWords(readFileSync(corpusFile, 'utf8')), 20);
const same = JSON.stringify(single) === JSON.stringify(top);
console.log(same ? 'matches a single-process count: yes' : 'matches a single-process count: NO');
process.exit(same ? 0 : 1);
