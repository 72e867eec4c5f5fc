import { pino, type Logger as PinoLogger } from 'pino';

export type Logger = PinoLogger;

/**
 * JSON logs by default (what log shippers want); pretty lines when a person is watching a terminal.
 * Fixed fields (`service`, ...) ride along on every line.
 */
export function createLogger(opts: { level: string; service: string; pretty?: boolean }): Logger {
  const base = { service: opts.service };
  if (opts.pretty) {
    return pino({
      level: opts.level,
      base,
      transport: {
        target: 'pino-pretty',
        options: { colorize: true, ignore: 'pid,hostname', destination: 2 },
      },
    });
  }
  return pino(
    { level: opts.level, base, redact: ['redisUrl', '*.password', '*.token'] },
    pino.destination(2),
  );
}
