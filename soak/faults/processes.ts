import { setTimeout as sleep } from 'node:timers/promises';
import { skipped, untilTarget, type Inject } from './common.js';

/** Faults of the conveyor processes: SIGKILL, then a restart (producer) or a replacement (consumer). */
export const processFaults = {
  'producer-kill': async (ctx, rng) => {
    const target = await untilTarget(() => {
      const live = ctx
        .pending()
        .flatMap((run) => run.producers.filter((p) => p.proc.exited === null).map((p) => ({ run, ...p })));
      return live.length ? rng.pick(live) : undefined;
    });
    if (!target) return skipped('no producer running');
    const { run, plan, proc } = target;
    run.killedProducers.add(plan.id);
    run.pendingRestarts++;
    try {
      ctx.kill(proc);
      await proc.exit;
      // A container is restarted after a moment, under the same PRODUCER_ID.
      await sleep(rng.int(200, 800));
      ctx.spawnProducer(run, plan);
    } finally {
      run.pendingRestarts--;
    }
    return { applied: true, target: `${proc.label} (${plan.kind}), restarted` };
  },
  'consumer-kill': async (ctx, rng) => {
    const runConsumers = ctx
      .pending()
      .flatMap((run) => run.consumers.filter((c) => c.exited === null).map((c) => ({ run, c })));
    const workers = ctx.workers.filter((w) => w.exited === null).map((c) => ({ run: null, c }));
    const live = [...workers, ...runConsumers];
    if (live.length === 0) return skipped('no consumer running');
    const { run, c } = rng.pick(live);
    ctx.kill(c);
    await c.exit;
    if (run) ctx.spawnRunConsumer(run);
    else ctx.spawnWorker();
    return { applied: true, target: `${c.label}, replaced` };
  },
} satisfies Record<string, Inject>;
