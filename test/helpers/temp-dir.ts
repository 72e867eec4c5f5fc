import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach } from 'vitest';

/**
 * A fresh folder in the system's temp folder for each test, removed after it. Hooks run in reverse
 * after a test, so one registered before useTestQueue is removed only once the queue is released.
 */
export function useTempDir(prefix: string): { readonly path: string } {
  let path: string | undefined;
  beforeEach(() => {
    path = mkdtempSync(join(tmpdir(), prefix));
  });
  afterEach(() => {
    if (path) rmSync(path, { recursive: true, force: true });
  });
  return {
    get path() {
      if (!path) throw new Error('useTempDir: its folder exists only inside a test or its hooks');
      return path;
    },
  };
}
