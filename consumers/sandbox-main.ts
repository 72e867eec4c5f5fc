/**
 * The entry of a sandboxed attempt (a job type with `isolation`): a worker thread or a child process
 * that loads the job's module, runs one handler with its own abort signal, and reports the outcome.
 * Its parent (consumers/sandbox.ts) terminates it if the handler ignores an abort.
 */
import { parentPort } from 'node:worker_threads';
import { importJobModule, isDefinition } from '../shared/jobs/index.js';
import { createLogger } from '../shared/logger.js';
import type { SandboxReply, SandboxRequest } from './sandbox.js';

const send = (m: SandboxReply) => {
  if (parentPort) parentPort.postMessage(m);
  else process.send?.(m);
};
const controller = new AbortController();

const run = async (req: Extract<SandboxRequest, { type: 'run' }>) => {
  try {
    const mod = await importJobModule(req.source.spec, req.source.url, req.source.cwd);
    const def = Object.values(mod)
      .filter(isDefinition)
      .find((d) => d.name === req.name);
    if (!def) throw new Error(`the module no longer exports job type "${req.name}"`);
    const log = createLogger({ level: req.logLevel, service: 'sandbox' }).child({ jobId: req.jobId });
    const resources: unknown = def.createResources?.();
    try {
      const value = await def.handler(req.payload, {
        jobId: req.jobId,
        attempt: req.attempt,
        signal: controller.signal,
        log,
        resources,
      });
      send({ type: 'done', value });
    } finally {
      await def.disposeResources?.(resources);
    }
  } catch (err) {
    const e = err instanceof Error ? err : new Error(String(err));
    send({ type: 'error', name: e.name, message: e.message });
  }
};

const onMessage = (m: SandboxRequest) => {
  if (m.type === 'abort') controller.abort(new Error(m.reason));
  else void run(m);
};
if (parentPort) parentPort.on('message', onMessage);
else {
  process.on('message', onMessage);
  // The consumer went away: nothing will read the outcome.
  process.on('disconnect', () => process.exit(0));
  // A Ctrl-C reaches the whole process group: the consumer decides when this attempt ends.
  process.on('SIGINT', () => undefined);
}
