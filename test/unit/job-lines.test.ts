import { describe, expect, it } from 'vitest';
import { loadJobRegistry } from '../../shared/jobs/index.js';
import {
  jobBatches,
  JobLineError,
  MAX_LINE_BYTES,
  parseJobLine,
  readLines,
} from '../../producers/job-lines.js';

async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}

function* chunks(...parts: string[]) {
  for (const p of parts) yield Buffer.from(p);
}

describe('jobs file lines', () => {
  it('splits lines across chunks, drops \\r, keeps a last line without a newline, and numbers them from 1', async () => {
    expect(await collect(readLines(chunks('a\r\nb', 'b\n\nc'), 'f'))).toEqual([
      { line: 1, text: 'a' },
      { line: 2, text: 'bb' },
      { line: 3, text: '' },
      { line: 4, text: 'c' },
    ]);
  });

  it('refuses a line past MAX_LINE_BYTES, naming it, without holding more than that', async () => {
    const big = 'x'.repeat(64 * 1024);
    function* endless() {
      yield Buffer.from('{}\n');
      for (;;) yield Buffer.from(big);
    }
    await expect(collect(readLines(endless(), 'huge.ndjson'))).rejects.toThrow(
      new JobLineError('huge.ndjson', 2, `longer than ${MAX_LINE_BYTES} bytes: is this a jobs file?`),
    );
  });

  it('reads only as far as the batches taken: an endless input is read in bounded memory', async () => {
    const registry = await loadJobRegistry([], process.cwd());
    let pulled = 0;
    function* endless() {
      for (let i = 0; ; i++) {
        pulled++;
        // 100 lines per chunk
        yield Array.from(
          { length: 100 },
          (_, j) => `{"type":"sleep","payload":{"value":${i * 100 + j},"ms":0}}\n`,
        ).join('');
      }
    }
    const batches = jobBatches(endless(), 'stdin', registry, 50, 'p');
    for (let i = 0; i < 10; i++) {
      const next = await batches.next();
      expect(next.value).toHaveLength(50);
    }
    await batches.return(undefined);
    // 10 batches of 50 lines are 5 chunks; one more may be in hand.
    expect(pulled).toBeLessThanOrEqual(6);
  });

  it("gives each line a key from its number, its content and the producer, or the line's own", async () => {
    const registry = await loadJobRegistry([], process.cwd());
    const text = '{"type":"sleep","payload":{"value":1,"ms":0}}';
    const key = (t: string, line: number, producer = 'p') =>
      parseJobLine(t, line, 'f', registry, producer).key;
    expect(key(text, 7)).toBe(key(text, 7));
    expect(key(text, 7)).toMatch(/^l7\.[0-9a-f]{16}$/);
    expect(key(text, 8)).not.toBe(key(text, 7));
    expect(key(text, 7, 'other')).not.toBe(key(text, 7));
    expect(key(text.replace('"value":1', '"value":2'), 7)).not.toBe(key(text, 7));
    expect(key('{"type":"sleep","payload":{"value":1,"ms":0},"key":"mine"}', 7)).toBe('mine');
  });
});
