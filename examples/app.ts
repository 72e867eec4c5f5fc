// app.ts: a consumer, a producer and the join, from code (npx tsx app.ts https://example.org/cat.png)
import { openProducer, openRun, startConsumer } from 'conveyor';
import { resize } from './jobs/resize.js';

const where = { redisUrl: process.env.REDIS_URL, queue: process.env.QUEUE }; // default: local Redis, "conveyor"
const runId = `resize-${Date.now()}`;
const consumer = await startConsumer({ ...where, runId, jobs: [resize], concurrency: 4 });
const producer = await openProducer({ ...where, runId, jobs: [resize] });
await producer.put('resize', { url: process.argv[2] ?? 'https://example.org/', width: 100 });
await producer.done();

const run = openRun({ ...where, runId }); // from any process: the distributed `await queue.join()`
const status = await run.join({ timeoutMs: 60_000 });
console.log(`${runId} joined: ${status.jobs.completed} completed, ${status.jobs.failed} failed`);
await run.close();
await consumer.exited; // it cancels itself once its run has joined
