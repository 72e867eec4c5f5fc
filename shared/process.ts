import { realpathSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { ConfigError, type Env } from './config.js';
import { createLogger, type Logger } from './logger.js';

/**
 * The shared opening of every `main.ts`: parse config (exit 2 with the variable's name on bad input),
 * then make the logger. Returns null after printing the problem when the config is invalid.
 */
export function startProcess<C extends { logLevel: string }>(
  service: string,
  load: (env: Env) => C,
  env: Env,
  proc: NodeJS.Process,
): { config: C; log: Logger } | null {
  try {
    const config = load(env);
    const log = createLogger({ level: config.logLevel, service, pretty: proc.stderr.isTTY });
    return { config, log };
  } catch (err) {
    return refuseBadInput(service, proc, err);
  }
}

/**
 * A start-up step that fails only on bad input (job modules, payload settings): on a ConfigError it
 * prints the message and sets exit code 2, returning null, before anything touched Redis.
 */
export async function checkInput<T>(
  service: string,
  proc: NodeJS.Process,
  step: () => Promise<T>,
): Promise<T | null> {
  try {
    return await step();
  } catch (err) {
    return refuseBadInput(service, proc, err);
  }
}

/** A ConfigError is printed with exit code 2 (null returned); anything else is rethrown. */
function refuseBadInput(service: string, proc: NodeJS.Process, err: unknown): null {
  if (!(err instanceof ConfigError)) throw err;
  proc.stderr.write(`${service}: ${err.message}\n`);
  proc.exitCode = 2;
  return null;
}

/**
 * True when the module at `moduleUrl` is the script node was started with (`script`: process.argv[1]),
 * so a command's `main.ts` runs itself when started directly and only exports `main` when the
 * `conveyor` command imports it.
 */
export function isEntryModule(moduleUrl: string, script: string | undefined): boolean {
  if (!script) return false;
  try {
    return pathToFileURL(realpathSync(script)).href === moduleUrl;
  } catch {
    return false;
  }
}
