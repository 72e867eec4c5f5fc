import type { Socket } from 'node:net';
import { describe, expect, it } from 'vitest';
import { inOneWrite } from '../../shared/redis.js';
import { queuePrefix } from '../../shared/keys.js';
import { useTestQueue } from '../helpers/test-queue.js';

/** Counts the writes the socket hands to the operating system, and how many chunks each carried. */
function countWrites(socket: Socket): number[] {
  const writes: number[] = [];
  const s = socket as unknown as {
    _write: (...a: unknown[]) => void;
    _writev: (chunks: unknown[], cb: unknown) => void;
  };
  const write = s._write.bind(s);
  const writev = s._writev.bind(s);
  s._write = (...a) => {
    writes.push(1);
    write(...a);
  };
  s._writev = (chunks, cb) => {
    writes.push(chunks.length);
    writev(chunks, cb);
  };
  return writes;
}

describe('inOneWrite', () => {
  const ctx = useTestQueue();

  it('sends the commands issued inside it, across awaits, in one socket write, and answers each', async () => {
    const { redis } = ctx;
    await redis.ping();
    const key = queuePrefix(ctx.queue);
    const writes = countWrites(redis.stream);
    const replies = await inOneWrite(redis, async () => {
      const first = redis.set(`${key}:a`, '1');
      // A command issued after an await, as BullMQ's add does, still goes in the same write.
      await Promise.resolve();
      const second = redis.incr(`${key}:b`);
      return Promise.all([first, second]);
    });
    expect(replies).toEqual(['OK', 1]);
    expect(writes).toEqual([2]);
  });
});
