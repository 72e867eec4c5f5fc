import { createRequire } from 'node:module';
import { pino, type Logger as PinoLogger } from 'pino';

export type Logger = PinoLogger;

/**
 * Whether pino-pretty can be loaded from here. It is a development dependency: a production install
 * (`npm ci --omit=dev`, the image, the installed package) lacks it, and pino would throw at start-up.
 */
export function prettyAvailable(
  resolve: (id: string) => string = createRequire(import.meta.url).resolve,
): boolean {
  try {
    resolve('pino-pretty');
    return true;
  } catch {
    return false;
  }
}

/**
 * JSON logs by default (what log shippers want); pretty lines when a person is watching a terminal
 * and pino-pretty is installed. Fixed fields (`service`, ...) ride along on every line.
 */
export function createLogger(opts: { level: string; service: string; pretty?: boolean }): Logger {
  const base = { service: opts.service };
  if (opts.pretty && prettyAvailable()) {
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
