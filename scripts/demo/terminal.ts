/** Where the demo writes: the process's own stdout and stderr, passed in. */
export type Terminal = Pick<NodeJS.Process, 'stdout' | 'stderr'>;

/** A line for stderr. On a terminal it clears the progress line before printing above it; elsewhere the line goes as is. */
export function printAbove(term: Terminal): (line: string) => void {
  return (line) => void term.stderr.write(`${term.stderr.isTTY ? '\r\x1b[K' : ''}${line}\n`);
}
