import { UnrecoverableError } from 'bullmq';
import { describe, expect, it } from 'vitest';
import { boundError, LOG_MAX, MESSAGE_MAX, STACK_MAX } from '../../consumers/bounded-error.js';

describe('boundError', () => {
  it('leaves a usual error as it is', () => {
    const err = new Error('connection refused');
    const stack = err.stack;
    expect(boundError(err)).toBeNull();
    expect(err.message).toBe('connection refused');
    expect(err.stack).toBe(stack);
    expect(boundError('a thrown string')).toBeNull();
  });

  it('cuts a long message and its stack, keeps the class, and returns the text for the log', () => {
    const err = new UnrecoverableError(`line one\n${'y'.repeat(100_000)}`);
    const whole = boundError(err)!;
    expect(err).toBeInstanceOf(UnrecoverableError);
    expect(err.message.length).toBe(MESSAGE_MAX);
    expect(err.message).toMatch(/^line one\ny+… \(100009 characters; more in the job's log\)$/);
    expect(err.stack!.length).toBeLessThanOrEqual(STACK_MAX);
    expect(err.stack).toMatch(/^UnrecoverableError: line one\ny+…/);
    expect(err.stack).toContain('    at ');
    expect(whole).toMatch(/^UnrecoverableError: line one\ny{100000}\n {4}at /);
  });

  it('cuts a stack too long on its own, and the log text at LOG_MAX', () => {
    const deep = new Error('deep');
    deep.stack = `Error: deep\n${'    at frame (file.js:1:1)\n'.repeat(20_000)}`;
    const whole = boundError(deep)!;
    expect(deep.message).toBe('deep');
    expect(deep.stack.length).toBe(STACK_MAX);
    expect(whole.length).toBeLessThanOrEqual(LOG_MAX + 50);
    expect(whole).toMatch(/\n… \d+ characters not kept$/);
  });
});
