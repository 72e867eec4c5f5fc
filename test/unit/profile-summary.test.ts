import { describe, expect, it } from 'vitest';
import { placeOf, summarise, type Profile } from '../../bench/profile.js';

const frame = (functionName: string, url: string) => ({ functionName, url, lineNumber: 0 });

describe('cpu profile summary', () => {
  it('names where code lives: a package, a project folder, Node, or V8', () => {
    expect(placeOf(frame('f', 'file:///app/node_modules/@bull-board/api/dist/x.js'))).toBe('@bull-board/api');
    expect(placeOf(frame('f', 'file:///app/node_modules/ioredis/built/Command.js'))).toBe('ioredis');
    expect(placeOf(frame('f', 'file:///app/dist/bench/app/consumers/consumer.js'))).toBe(
      'conveyor consumers/',
    );
    expect(placeOf(frame('f', 'node:internal/timers'))).toBe('node');
    expect(placeOf(frame('(garbage collector)', ''))).toBe('(gc)');
    expect(placeOf(frame('(idle)', ''))).toBe('(idle)');
  });

  it('adds each sample’s time to its leaf, leaves idle out, and skips the first afterMs', () => {
    const profile: Profile = {
      nodes: [
        { id: 1, callFrame: frame('(root)', '') },
        { id: 2, callFrame: frame('write', 'file:///app/node_modules/ioredis/built/Redis.js') },
        { id: 3, callFrame: frame('(idle)', '') },
        { id: 4, callFrame: frame('(garbage collector)', '') },
      ],
      samples: [2, 2, 3, 4, 2],
      timeDeltas: [1_000, 2_000, 5_000, 3_000, 4_000],
    };
    const all = summarise('p', profile);
    expect(all.busyMs).toBe(10);
    expect(all.byPlace).toEqual([
      { place: 'ioredis', ms: 7 },
      { place: '(gc)', ms: 3 },
    ]);
    // The first 3 ms (two samples) left out.
    const later = summarise('p', profile, 3);
    expect(later.busyMs).toBe(7);
    expect(later.byFunction[0]).toMatchObject({ place: 'ioredis', ms: 4 });
  });
});
