import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { countWords, topWords } from '../../examples/map-reduce/words.js';
import { readRunStatus } from '../../shared/run/status.js';
import { exitOf, spawnTracked } from '../helpers/processes.js';
import { redisUrl } from '../helpers/redis.js';
import { useTempDir } from '../helpers/temp-dir.js';
import { useTestQueue } from '../helpers/test-queue.js';

/** examples/map-reduce end to end: stage 1's join callback starts stage 2, whose top 20 is checked. */
describe('examples/map-reduce', () => {
  // Before useTestQueue: the folder is removed only after the queue's release.
  const dir = useTempDir('conveyor-mr-');
  const ctx = useTestQueue();

  it('3 producers and 2 consumers count a corpus; the chained reduce run writes the same top 20 as one process', async () => {
    const p = spawnTracked(
      'map-reduce',
      process.execPath,
      ['--import', 'tsx', 'examples/map-reduce/main.ts'],
      {
        REDIS_URL: redisUrl(),
        QUEUE: ctx.queue,
        WORK_DIR: dir.path,
        LINES: '2000',
        CHUNK_LINES: '100',
      },
    );
    const { code } = await exitOf(p, 60_000);
    expect(code, p.output()).toBe(0);
    expect(p.stdout()).toMatch(/^stage 1 wordcount-\d+ joined: 20 chunks counted by 2 consumers, 0 failed$/m);
    expect(p.stdout()).toMatch(/^stage 2 (wordcount-\d+)-reduce \(after \1\) joined: 1 reduce job$/m);
    expect(p.stdout()).toContain('matches a single-process count: yes');
    // Independently of the example's own check: its file against a count made here.
    const top = JSON.parse(readFileSync(join(dir.path, 'top20.json'), 'utf8')) as unknown;
    expect(top).toEqual(topWords(countWords(readFileSync(join(dir.path, 'corpus.txt'), 'utf8')), 20));
    expect((top as unknown[]).length).toBe(20);
    // The chain, both ways: status (and the dashboard) link each stage to the other.
    const stage1 = /^stage 1 (wordcount-\d+) joined/m.exec(p.stdout())![1]!;
    const [first, second] = await Promise.all(
      [stage1, `${stage1}-reduce`].map((id) => readRunStatus(ctx.redis, ctx.queue, id, 5_000)),
    );
    expect([first?.state, first?.afterRun, first?.nextRun]).toEqual(['done', null, `${stage1}-reduce`]);
    expect(first?.callbacks.map((c) => [c.type, c.state])).toEqual([['start-reduce', 'completed']]);
    expect([second?.state, second?.afterRun, second?.nextRun]).toEqual(['done', stage1, null]);
  });
});
