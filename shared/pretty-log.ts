/**
 * pino's JSON lines made readable for a person at a terminal, written synchronously (no worker
 * thread, no extra package, so the installed package has it too):
 * `12:03:41.218 INFO  producer  producer registered  planned=5 idPrefix=r1+1`.
 */
const LEVELS: Record<number, [name: string, colour: number]> = {
  10: ['TRACE', 90],
  20: ['DEBUG', 36],
  30: ['INFO ', 32],
  40: ['WARN ', 33],
  50: ['ERROR', 31],
  60: ['FATAL', 35],
};

/** Fields every line has, shown in the line's head or not at all. */
const HEAD = new Set(['level', 'time', 'msg', 'service', 'pid', 'hostname']);

export function formatLogLine(json: string, colour: boolean): string {
  let entry: Record<string, unknown>;
  try {
    entry = JSON.parse(json) as Record<string, unknown>;
  } catch {
    return json;
  }
  const paint = (code: number, text: string) => (colour ? `\u001b[${code}m${text}\u001b[39m` : text);
  const [name, code] = LEVELS[Number(entry.level)] ?? [String(entry.level).padEnd(5), 39];
  const time = typeof entry.time === 'number' ? new Date(entry.time).toISOString().slice(11, 23) : '';
  const fields: string[] = [];
  let stack = '';
  for (const [key, value] of Object.entries(entry)) {
    if (HEAD.has(key)) continue;
    // An error object prints its stack below the line, indented, the way a person reads it.
    if (
      typeof value === 'object' &&
      value !== null &&
      typeof (value as { stack?: unknown }).stack === 'string'
    ) {
      const err = value as { message?: string; stack: string };
      fields.push(`${key}=${JSON.stringify(err.message ?? '')}`);
      stack = `\n    ${err.stack.split('\n').join('\n    ')}`;
      continue;
    }
    fields.push(`${key}=${typeof value === 'string' && !/\s/.test(value) ? value : JSON.stringify(value)}`);
  }
  const service = typeof entry.service === 'string' ? `${paint(90, entry.service)}  ` : '';
  const msg = typeof entry.msg === 'string' ? entry.msg : '';
  return `${paint(90, time)} ${paint(code, name)} ${service}${msg}${fields.length ? `  ${paint(90, fields.join(' '))}` : ''}${stack}`;
}

/** A pino destination that writes each line formatted to `out` (stderr for conveyor's processes). */
export function prettyDestination(out: NodeJS.WriteStream): { write(line: string): void } {
  const colour = out.isTTY && out.hasColors?.() !== false;
  return {
    write: (line) => {
      for (const one of line.split('\n')) if (one) out.write(`${formatLogLine(one, colour)}\n`);
    },
  };
}
