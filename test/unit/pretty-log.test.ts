import { describe, expect, it } from 'vitest';
import { formatLogLine } from '../../shared/pretty-log.js';

describe('terminal log lines', () => {
  it('prints time, level, service, message and the other fields as key=value', () => {
    const line = JSON.stringify({
      level: 30,
      time: Date.UTC(2026, 0, 2, 12, 3, 41, 218),
      service: 'producer',
      pid: 1,
      msg: 'producer registered',
      planned: 5,
      idPrefix: 'r1+1',
      note: 'two words',
    });
    expect(formatLogLine(line, false)).toBe(
      '12:03:41.218 INFO  producer  producer registered  planned=5 idPrefix=r1+1 note="two words"',
    );
  });

  it("prints an error's stack below its line, and passes through a line that is not JSON", () => {
    const err = { type: 'Error', message: 'boom', stack: 'Error: boom\n    at x (y.ts:1:2)' };
    const text = formatLogLine(JSON.stringify({ level: 50, time: 0, msg: 'failed', err }), false);
    expect(text.split('\n')).toEqual([
      '00:00:00.000 ERROR failed  err="boom"',
      '    Error: boom',
      '        at x (y.ts:1:2)',
    ]);
    expect(formatLogLine('not json', false)).toBe('not json');
    expect(formatLogLine(JSON.stringify({ level: 40, time: 0, msg: 'x' }), true)).toContain('\u001b[33mWARN');
  });
});
