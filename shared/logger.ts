import { pino, type Logger as PinoLogger } from 'pino';
import { prettyDestination } from './pretty-log.js';

export type Logger = PinoLogger;

/**
 * JSON logs by default (what log shippers want); readable lines when a person is watching a
 * terminal (pretty-log.ts). Fixed fields (`service`, ...) ride along on every line.
 */
export function createLogger(opts: { level: string; service: string; pretty?: boolean }): Logger {
  const base = { service: opts.service };
  const options = { level: opts.level, base, redact: ['redisUrl', '*.password', '*.token'] };
  return opts.pretty ? pino(options, prettyDestination(process.stderr)) : pino(options, pino.destination(2));
}
