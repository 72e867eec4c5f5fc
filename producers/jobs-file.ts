import { access, constants, stat } from 'node:fs/promises';
import { ConfigError } from '../shared/config.js';

/** JOBS_FILE must name a readable file ('-' is standard input); checked before anything touches Redis. */
export async function checkReadable(jobsFile: string): Promise<void> {
  if (jobsFile === '-') return;
  try {
    await access(jobsFile, constants.R_OK);
    const st = await stat(jobsFile);
    if (!st.isFile() && !st.isFIFO()) throw new Error('not a file');
  } catch (err) {
    const why = (err as NodeJS.ErrnoException).code ?? (err instanceof Error ? err.message : String(err));
    throw new ConfigError([
      `JOBS_FILE: cannot read "${jobsFile}" (${why}); give a file, or - for standard input`,
    ]);
  }
}
