/**
 * The run protocol's Lua scripts. Every decision that more than one process could race on
 * (registering, acknowledging, finishing, losing a producer, closing a shard, joining) happens inside
 * one script, so Redis serialises it and no coordinator process has to stay alive.
 *
 * A run's state is split by Redis Cluster slot, and every key a script touches is named in KEYS.
 * The run's own scripts touch only the queue's slot: KEYS = the run's keys (RUN_SCRIPT_KEYS in
 * script-keys.ts), ARGV[1] = events channel, arguments from ARGV[2]. Each shard's scripts touch only
 * that shard's slot (beside its BullMQ keys): KEYS = the shard's keys (SHARD_SCRIPT_KEYS), then the
 * per-call keys the script names (in-flight sets, BullMQ job hashes), arguments from ARGV[1].
 *
 * One script per file in scripts/, each with a header naming its KEYS and ARGV; what they share
 * (the key locals, generated from script-keys.ts, and the Lua helpers) is in scripts/prelude.ts.
 *
 * The join stays exact across slots because every fact that crosses between them only ever moves
 * one way: "every producer has finished and every dead producer instance is settled" (run → shard)
 * and "this shard is closed, with these final totals" (shard → run). A shard closes once it has heard
 * the first and has no unfinished job; the run joins, once, when it is shown every shard closed. With
 * one shard both live in the same slot and the shard's meta is the run's meta: counters and run
 * fields never share a name.
 *
 * Producer instances: a producer id may register again (a restarted container keeps its hostname and
 * pid); each registration is a new incarnation whose instance id (`<id>` for the first, `<id>~<n>`
 * after) names its job ids and in-flight sets, so no incarnation reuses another's ids. A superseded
 * or lost instance is settled on every shard and fenced there: its later acknowledgements are refused.
 */

export { RUN_KEY_NAMES, SHARD_KEY_NAMES, SHARD_RUN_KEY_NAMES } from './script-keys.js';
export { CANCELLED_REASON, COUNTED_MARK } from './scripts/prelude.js';
export { createRunLua } from './scripts/create-run.js';
export { registerProducerLua } from './scripts/register-producer.js';
export { heartbeatProducerLua } from './scripts/heartbeat-producer.js';
export { producerDoneLua } from './scripts/producer-done.js';
export { checkRunLua } from './scripts/check-run.js';
export { settledRunLua } from './scripts/settled-run.js';
export { joinRunLua } from './scripts/join-run.js';
export { announceReopenLua } from './scripts/announce-reopen.js';
export { claimCallbacksLua } from './scripts/claim-callbacks.js';
export { callbackStateLua } from './scripts/callback-state.js';
export { claimDueLua } from './scripts/claim-due.js';
export { saveConsumerLua } from './scripts/save-consumer.js';
export { requestCancelLua } from './scripts/request-cancel.js';
export { cancelRunLua } from './scripts/cancel-run.js';
export { initShardLua } from './scripts/init-shard.js';
export { cancelJobLua } from './scripts/cancel-job.js';
export { markCancelledLua } from './scripts/mark-cancelled.js';
export { tallyProducerLua } from './scripts/tally-producer.js';
export { putJobsLua, PUT_QUEUE_KEY_NAMES } from './scripts/put-jobs.js';
export { recordFinishedLua } from './scripts/record-finished.js';
export { countCallbackLua } from './scripts/count-callback.js';
export { trimCountedLua } from './scripts/trim-counted.js';
export { reopenLua } from './scripts/reopen.js';
export { settleInstanceLua } from './scripts/settle-instance.js';
export { closeShardLua } from './scripts/close-shard.js';
export { reconcileLua } from './scripts/reconcile.js';
export { callbackMarkLua } from './scripts/callback-mark.js';
export { storeResultLua } from './scripts/store-result.js';
export { markRunSeenLua } from './scripts/mark-run-seen.js';
export { resolveCurrentRunLua } from './scripts/resolve-current-run.js';
