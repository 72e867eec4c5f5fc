import {
  luaKeyLocals,
  luaQueueWideSet,
  RUN_SCRIPT_KEYS,
  SHARD_FIXED,
  SHARD_RUN_KEYS,
  SHARD_SCRIPT_KEYS,
} from './script-keys.js';

/**
 * The run protocol's Lua scripts. Every decision that more than one process could race on
 * (registering, acknowledging, finishing, losing a producer, closing a shard, joining) happens inside
 * one script, so Redis serialises it and no coordinator process has to stay alive.
 *
 * A run's state is split by Redis Cluster slot, and every key a script touches is named in KEYS.
 * The run's own scripts touch only the queue's slot: KEYS = RUN_KEYS (below), ARGV[1] = events
 * channel, arguments from ARGV[2]. Each shard's scripts touch only that shard's slot (beside its
 * BullMQ keys): KEYS = SHARD_KEYS, then the per-call keys the script names (in-flight sets, BullMQ
 * job hashes), arguments from ARGV[1].
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

/** How long the record of a consumer waiting for a run that does not exist lives without a heartbeat. */
const WAITING_CONSUMER_TTL_MS = 3_600_000;

/** How a counted job is marked in its stored data, so the consumer that takes it again asks its run. */
export const COUNTED_MARK = ',"counted":true}';

/** How a cancelled job's failure reason begins in BullMQ (the reconcile counts such a job cancelled). */
export const CANCELLED_REASON = 'conveyor: cancelled';

const common = /* lua */ `
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
`;

const runPrelude =
  common +
  /* lua */ `
${luaKeyLocals(RUN_SCRIPT_KEYS)}
local QUEUE_WIDE, RUN_KEY_COUNT = ${luaQueueWideSet()}, ${RUN_SCRIPT_KEYS.length}

local function load_producer(id)
  local raw = redis.call('HGET', PRODUCERS, id)
  if raw then return cjson.decode(raw) end
  return nil
end

local function save_producer(id, rec)
  redis.call('HSET', PRODUCERS, id, cjson.encode(rec))
end

local function instance_of(rec)
  local inc = tonumber(rec.incarnation) or 1
  if inc == 1 then return rec.id end
  return rec.id .. '~' .. inc
end

-- Leases measure a process's silence, not Redis's: when no process reached the run for a long
-- stretch (Redis down, paused or restarting), push each lease back by that stretch instead of
-- declaring every producer lost the moment Redis returns. A producer is credited once per silence
-- of its own: one that has not heartbeated since its last credit is not credited again, so a
-- process that stalls again and again (or a heartbeat slower than half the lease) cannot keep a
-- dead producer alive.
local function observe(now)
  local last = tonumber(redis.call('HGET', META, 'lastSeenAt'))
  redis.call('HSET', META, 'lastSeenAt', now)
  local lease = tonumber(redis.call('HGET', META, 'leaseMs') or '10000')
  if last and now - last > lease / 2 then
    for _, pid in ipairs(redis.call('ZRANGE', LEASES, 0, -1)) do
      if redis.call('SADD', CREDITED, pid) == 1 then redis.call('ZINCRBY', LEASES, now - last, pid) end
    end
  end
end

-- A producer whose lease ran out is lost for good; each shard settles what it had in flight there.
local function lose_producer(pid, now)
  redis.call('ZREM', LEASES, pid)
  redis.call('SREM', CREDITED, pid)
  local rec = load_producer(pid)
  if not rec or rec.state ~= 'running' then return end
  rec.state = 'lost'
  rec.lostAt = now
  save_producer(pid, rec)
  redis.call('HINCRBY', META, 'lostProducers', 1)
  redis.call('SADD', UNSETTLED, instance_of(rec))
end

-- Forget joined (or abandoned) runs whose retention has passed: the index entries here, the keys by
-- their TTL. A run whose callbacks were never delivered leaves the outbox too: nothing is left to
-- deliver them from.
local function prune_index(now)
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', EXPIRIES, '-inf', now, 'LIMIT', 0, 100)) do
    redis.call('ZREM', RUN_INDEX, id)
    redis.call('ZREM', EXPIRIES, id)
    redis.call('ZREM', CALLBACKS_DUE, id)
  end
end

-- A joined (or abandoned) run's keys expire after its retention; anything written later gets the same TTL.
local function keep_ttl()
  local ms = tonumber(redis.call('HGET', META, 'retentionMs') or '0')
  local state = redis.call('HGET', META, 'state')
  if ms > 0 and (state == 'joined' or state == 'abandoned') then
    for i = 1, #KEYS do
      if not QUEUE_WIDE[i] then redis.call('PEXPIRE', KEYS[i], ms) end
    end
  end
end
`;

const shardPrelude =
  common +
  /* lua */ `
${luaKeyLocals(SHARD_SCRIPT_KEYS)}
local FIXED, RUN_OWNED = ${SHARD_FIXED}, ${SHARD_RUN_KEYS}

-- The run's id prefix on this shard ('<run>+<creation>'), or nil when the run is gone (its retention
-- passed, or it was never created): then a script writes nothing.
local PREFIX = redis.call('HGET', SMETA, 'shardPrefix')

-- One of this creation's job ids: '<prefix>+...', '<prefix>=...' or '<prefix>@...'. An id of an
-- earlier run with the same run id has another creation number, so it never matches.
local function owned(id)
  if not PREFIX or string.sub(id, 1, #PREFIX) ~= PREFIX then return false end
  local c = string.sub(id, #PREFIX + 1, #PREFIX + 1)
  return c == '+' or c == '=' or c == '@'
end

local function count_produced(instance, n)
  if n == 0 then return end
  redis.call('HINCRBY', SMETA, 'produced', n)
  redis.call('HINCRBY', PRODUCED_BY, instance, n)
end

-- A closed shard's keys expire after the run's retention; anything written later gets the same TTL.
local function keep_ttl()
  local ms = tonumber(redis.call('HGET', SMETA, 'retentionMs') or '0')
  if ms > 0 and redis.call('HEXISTS', SMETA, 'closedAt') == 1 then
    for i = 1, RUN_OWNED do redis.call('PEXPIRE', KEYS[i], ms) end
  end
end

-- Every producer has finished and no acknowledged job here is unfinished: the shard's totals are final.
local function close(now, retention_ms)
  if redis.call('HEXISTS', SMETA, 'closedAt') == 0 then
    local m = redis.call('HMGET', SMETA, 'produced', 'completed', 'failed', 'removed', 'cancelled')
    local totals = cjson.encode({produced = tonumber(m[1]) or 0, completed = tonumber(m[2]) or 0,
      failed = tonumber(m[3]) or 0, removed = tonumber(m[4]) or 0, cancelled = tonumber(m[5]) or 0})
    redis.call('HSET', SMETA, 'closedAt', now, 'closedTotals', totals, 'retentionMs', retention_ms)
    redis.call('DEL', SUSPECT)
  end
  keep_ttl()
  return {'closed', redis.call('HGET', SMETA, 'closedTotals')}
end

-- A counted job's stored data with COUNTED_MARK, which the consumer that takes it again reads.
local function counted_data(d)
  d = d or '{}'
  if string.sub(d, -#'${COUNTED_MARK}') == '${COUNTED_MARK}' then return d end
  if d == '{}' then return '{' .. string.sub('${COUNTED_MARK}', 2) end
  return string.sub(d, 1, -2) .. '${COUNTED_MARK}'
end

-- A counted job (still in BullMQ) joins the queue-wide list conveyor trims BullMQ's finished sets
-- from, so no job leaves BullMQ before its run counted it. Returns true when that list is past the
-- run's keep (KEEP_COMPLETED / KEEP_FAILED; none recorded: keep all).
local keeps
local function mark_counted(id, outcome)
  if not keeps then
    local k = redis.call('HMGET', SMETA, 'keepCompleted', 'keepFailed')
    keeps = {completed = tonumber(k[1] or '-1'), failed = tonumber(k[2] or '-1')}
  end
  -- LPUSH answers the list's new length
  if outcome == 'completed' then
    return keeps.completed >= 0 and redis.call('LPUSH', COUNTED_COMPLETED, id) > keeps.completed
  end
  return keeps.failed >= 0 and redis.call('LPUSH', COUNTED_FAILED, id) > keeps.failed
end
`;

/**
 * ARGV[2] runId, ARGV[3] expected producers, ARGV[4] lease ms, ARGV[5] shard count, ARGV[6]
 * retention ms after the join (0 = keep), ARGV[7] the run's join callbacks (JSON list, '' for none;
 * see callbacks.ts), ARGV[8] the run whose callback started this one ('' for none; the key after the
 * run's keys is its meta, which records this run as its next), ARGV[9] the bounds of its collected results (JSON {maxJobBytes, maxRunBytes}; '' when it collects none).
 * A new run gets the next creation number of its queue: its id prefix is '<runId>+<n>'.
 * Returns {1 when created or 0 when it already existed, the run's id prefix}.
 */
export const createRunLua =
  runPrelude +
  /* lua */ `
local expected = redis.call('HGET', META, 'expectedProducers')
if expected then
  if tonumber(expected) ~= tonumber(ARGV[3]) then
    return redis.error_reply('EXPECTED_MISMATCH ' .. expected)
  end
  local shards = redis.call('HGET', META, 'shards') or '1'
  if tonumber(shards) ~= tonumber(ARGV[5]) then return redis.error_reply('SHARDS_MISMATCH ' .. shards) end
  return {0, redis.call('HGET', META, 'idPrefix')}
end
if tonumber(ARGV[3]) < 1 then return redis.error_reply('EXPECTED_INVALID ' .. ARGV[3]) end
local now = now_ms()
prune_index(now)
-- A run id used again (its retention passed) starts clean: leftovers of the earlier creation go, and
-- the new one's creation number makes all its job ids new. Consumers already waiting for this run
-- keep their records (CONSUMERS, BEATS).
for i = 2, RUN_KEY_COUNT do
  local key = KEYS[i]
  if not QUEUE_WIDE[i] and key ~= CONSUMERS and key ~= BEATS then redis.call('DEL', key) end
end
redis.call('ZREM', RUN_INDEX, ARGV[2])
redis.call('ZREM', PENDING, ARGV[2])
redis.call('ZREM', EXPIRIES, ARGV[2])
redis.call('ZREM', CALLBACKS_DUE, ARGV[2])
local prefix = ARGV[2] .. '+' .. redis.call('INCR', CREATIONS)
redis.call('HSET', META, 'runId', ARGV[2], 'expectedProducers', ARGV[3], 'createdAt', now,
  'state', 'pending', 'leaseMs', ARGV[4], 'lastSeenAt', now, 'shards', ARGV[5], 'retentionMs', ARGV[6],
  'idPrefix', prefix)
if ARGV[7] and ARGV[7] ~= '' then redis.call('HSET', META, 'callbacks', ARGV[7]) end
if ARGV[8] and ARGV[8] ~= '' then
  redis.call('HSET', META, 'afterRun', ARGV[8])
  -- KEYS[RUN_KEY_COUNT + 1]: the predecessor's meta when it is on the same queue; it names this run as its next
  local PREV = KEYS[RUN_KEY_COUNT + 1]
  if PREV and redis.call('EXISTS', PREV) == 1 then redis.call('HSET', PREV, 'nextRun', ARGV[2]) end
end
if ARGV[9] and ARGV[9] ~= '' then redis.call('HSET', META, 'collectResults', ARGV[9]) end
redis.call('ZADD', RUN_INDEX, 'NX', now, ARGV[2])
redis.call('ZADD', PENDING, 'NX', now, ARGV[2])
return {1, prefix}
`;

/**
 * ARGV[2] producer id, ARGV[3] JSON info {host,pid}, ARGV[4] lease ms. Registering an id that is
 * still running supersedes its earlier incarnation (settled and fenced on every shard). Returns
 * {Redis time, incarnation, the run's job id prefix}.
 */
export const registerProducerLua =
  runPrelude +
  /* lua */ `
local state = redis.call('HGET', META, 'state')
if not state then return redis.error_reply('NO_RUN') end
if state == 'joined' then return redis.error_reply('JOINED') end
if state == 'abandoned' then return redis.error_reply('ABANDONED') end
if redis.call('HEXISTS', META, 'cancelledAt') == 1 then return redis.error_reply('CANCELLED') end
local now = now_ms()
local rec = load_producer(ARGV[2])
if rec then
  if rec.state ~= 'running' then return redis.error_reply('FINISHED ' .. rec.state) end
  redis.call('SADD', UNSETTLED, instance_of(rec))
  local info = cjson.decode(ARGV[3])
  rec.host = info.host
  rec.pid = info.pid
  rec.incarnation = (tonumber(rec.incarnation) or 1) + 1
  rec.restartedAt = now
else
  local expected = tonumber(redis.call('HGET', META, 'expectedProducers'))
  if redis.call('HLEN', PRODUCERS) >= expected then return redis.error_reply('FULL ' .. expected) end
  rec = cjson.decode(ARGV[3])
  rec.state = 'running'
  rec.produced = 0
  rec.startedAt = now
  rec.incarnation = 1
end
rec.heartbeatAt = now
save_producer(ARGV[2], rec)
redis.call('SREM', CREDITED, ARGV[2])
redis.call('ZADD', LEASES, now + tonumber(ARGV[4]), ARGV[2])
return {now, rec.incarnation, redis.call('HGET', META, 'idPrefix')}
`;

/**
 * ARGV[2] producer id, ARGV[3] incarnation, ARGV[4] lease ms. Returns the producer's state
 * ('running' renews the lease; 'superseded' when a later incarnation registered).
 */
export const heartbeatProducerLua =
  runPrelude +
  /* lua */ `
local rec = load_producer(ARGV[2])
if not rec then return 'missing' end
if (tonumber(rec.incarnation) or 1) ~= tonumber(ARGV[3]) then return 'superseded' end
if rec.state ~= 'running' then return rec.state end
local now = now_ms()
observe(now)
rec.heartbeatAt = now
save_producer(ARGV[2], rec)
redis.call('SREM', CREDITED, ARGV[2])
redis.call('ZADD', LEASES, now + tonumber(ARGV[4]), ARGV[2])
if redis.call('HEXISTS', META, 'cancelledAt') == 1 then return 'cancelled' end
return 'running'
`;

/**
 * ARGV[2] producer id, ARGV[3] incarnation, ARGV[4] jobs it saw acknowledged, ARGV[5] of those,
 * how many no shard holds (Redis lost acknowledged writes: a restart that rolled back, or a
 * failover), ARGV[6] 'stopped' when a signal ended it before its planned jobs. Marks it done and returns its state ('lost' or 'superseded' when too late); the join
 * check follows as its own step.
 */
export const producerDoneLua =
  runPrelude +
  /* lua */ `
local rec = load_producer(ARGV[2])
if not rec then return redis.error_reply('NO_PRODUCER') end
if (tonumber(rec.incarnation) or 1) ~= tonumber(ARGV[3]) then return 'superseded' end
if rec.state == 'running' then
  rec.state = 'done'
  rec.doneAt = now_ms()
  rec.produced = tonumber(ARGV[4])
  if tonumber(ARGV[5]) > 0 then rec.lostAcks = tonumber(ARGV[5]) end
  if ARGV[6] == 'stopped' then rec.stoppedEarly = true end
  save_producer(ARGV[2], rec)
  redis.call('ZREM', LEASES, ARGV[2])
  redis.call('SREM', CREDITED, ARGV[2])
end
keep_ttl()
return rec.state
`;

/**
 * The run's half of the distributed queue.join(). Costs O(1) in the number of producers: counts,
 * plus the few leases that just ran out. Returns {reason, detail, retention ms, cancelled ('1' when
 * someone cancelled the run), instances to settle...}: 'producers-finished' once every expected
 * producer registered and finished (done, or lost when its lease ran out) and every dead instance is
 * settled (for ever after: all three are final), else why not. A cancelled run no longer waits for
 * producers that never registered (registering is refused after the cancel). The instances listed
 * must be settled on every shard (then `settledRun`), whatever the reason. ARGV[2] the run id: a run
 * whose keys are gone ('no-run') leaves the pending runs.
 *
 * A run waiting for producers that never registered, with none running, cannot move by itself. The
 * checks that find it so keep a clock, restarted whenever another producer registers; once it has run
 * for the abandon time (ARGV[3] ms; '' for the run's retention; 0 for never) the run is abandoned:
 * marked with why, out of the pending runs, its keys given the retention, and 'abandoned-now' returned
 * (once; 'abandoned' after).
 */
export const checkRunLua =
  runPrelude +
  /* lua */ `
-- Waiting for producers that never registered, with none running: true once that has lasted the
-- abandon time on the clock kept here (started by the first check that finds it so, restarted by a
-- new registration, stopped by a running or unsettled producer or a cancel).
local function stalled_too_long(now, stalled, registered, retention)
  if not stalled then
    redis.call('HDEL', META, 'stalledSince', 'stalledRegistered')
    return false
  end
  local clock = redis.call('HMGET', META, 'stalledSince', 'stalledRegistered')
  if not clock[1] or tonumber(clock[2]) ~= registered then
    redis.call('HSET', META, 'stalledSince', now, 'stalledRegistered', registered)
    return false
  end
  local abandon_ms = tonumber(ARGV[3]) or tonumber(retention)
  return abandon_ms > 0 and now - tonumber(clock[1]) >= abandon_ms
end

local state = redis.call('HGET', META, 'state')
if not state then
  -- Its keys are gone (expired, evicted, lost in a restart): nothing is left for a checker to check.
  redis.call('ZREM', PENDING, ARGV[2])
  return {'no-run', '0', '0', '0'}
end
if state == 'joined' then return {'joined', redis.call('HGET', META, 'joinedAt'), '0', '0'} end
if state == 'abandoned' then return {'abandoned', redis.call('HGET', META, 'abandonedAt'), '0', '0'} end
local now = now_ms()
observe(now)
local cancelled = tostring(redis.call('HEXISTS', META, 'cancelledAt'))
for _, pid in ipairs(redis.call('ZRANGEBYSCORE', LEASES, '-inf', now, 'LIMIT', 0, 100)) do
  lose_producer(pid, now)
end
local retention = redis.call('HGET', META, 'retentionMs') or '0'
local result
local expected = tonumber(redis.call('HGET', META, 'expectedProducers'))
local registered = redis.call('HLEN', PRODUCERS)
local running = redis.call('ZCARD', LEASES)
local unsettled = redis.call('SCARD', UNSETTLED)
-- (with a dead instance still to settle, the check settles it first: a fenced zombie writes nothing)
local stalled = registered < expected and cancelled == '0' and running == 0 and unsettled == 0
if stalled_too_long(now, stalled, registered, retention) then
  local waited = now - tonumber(redis.call('HGET', META, 'stalledSince'))
  redis.call('HSET', META, 'state', 'abandoned', 'abandonedAt', now, 'abandonedReason',
    'producers-missing', 'abandonedMissing', expected - registered, 'abandonedAfterMs', waited)
  redis.call('HDEL', META, 'stalledSince', 'stalledRegistered')
  redis.call('ZREM', PENDING, ARGV[2])
  if tonumber(retention) > 0 then redis.call('ZADD', EXPIRIES, now + tonumber(retention), ARGV[2]) end
  keep_ttl()
  redis.call('PUBLISH', ARGV[1], cjson.encode({type = 'abandoned', abandonedAt = now}))
  return {'abandoned-now', tostring(now), retention, '0'}
end
if registered < expected and cancelled == '0' then
  result = {'producers-missing', tostring(expected - registered), retention, cancelled}
elseif running > 0 then
  result = {'producers-running', tostring(running), retention, cancelled}
elseif unsettled > 0 then
  result = {'producers-settling', tostring(unsettled), retention, cancelled}
else
  return {'producers-finished', '0', retention, cancelled}
end
for _, id in ipairs(redis.call('SRANDMEMBER', UNSETTLED, 50)) do table.insert(result, id) end
return result
`;

/** ARGV[2..] instances every shard has settled. */
export const settledRunLua =
  runPrelude +
  /* lua */ `
for i = 2, #ARGV do redis.call('SREM', UNSETTLED, ARGV[i]) end
return 1
`;

/**
 * ARGV[2..] every shard's close totals (JSON), as the shards returned them. Flips the run to joined
 * exactly once and records the totals; returns {'joined-now' | 'joined', joinedAt}.
 */
export const joinRunLua =
  runPrelude +
  /* lua */ `
local state = redis.call('HGET', META, 'state')
if not state then return {'no-run', '0'} end
if state == 'joined' then return {'joined', redis.call('HGET', META, 'joinedAt')} end
local shards = tonumber(redis.call('HGET', META, 'shards') or '1')
if #ARGV - 1 ~= shards then return redis.error_reply('SHARDS_MISMATCH ' .. shards) end
local sum = {produced = 0, completed = 0, failed = 0, removed = 0, cancelled = 0}
for i = 2, #ARGV do
  local t = cjson.decode(ARGV[i])
  for k, _ in pairs(sum) do sum[k] = sum[k] + (tonumber(t[k]) or 0) end
end
local now = now_ms()
local totals = cjson.encode({produced = sum.produced, completed = sum.completed, failed = sum.failed,
  removed = sum.removed, cancelled = sum.cancelled,
  lostProducers = tonumber(redis.call('HGET', META, 'lostProducers')) or 0})
redis.call('HSET', META, 'state', 'joined', 'joinedAt', now, 'totalsAtJoin', totals)
redis.call('ZREM', PENDING, redis.call('HGET', META, 'runId'))
-- The outbox: the run's callbacks become due in the same step that joins it, so a crash right
-- after cannot lose them; any process delivers them later (deliverCallbacks in callbacks.ts).
local callbacks = redis.call('HGET', META, 'callbacks')
if callbacks then
  local due = 0
  for _, cb in ipairs(cjson.decode(callbacks)) do
    if cb.when == 'success' and (sum.failed > 0 or sum.removed > 0 or sum.cancelled > 0) then
      redis.call('HSET', META, 'cb:' .. cb.name, 'skipped')
    else
      redis.call('HSET', META, 'cb:' .. cb.name, 'pending')
      due = due + 1
    end
  end
  if due > 0 then redis.call('ZADD', CALLBACKS_DUE, now, redis.call('HGET', META, 'runId')) end
end
local retention = tonumber(redis.call('HGET', META, 'retentionMs') or '0')
if retention > 0 then redis.call('ZADD', EXPIRIES, now + retention, redis.call('HGET', META, 'runId')) end
prune_index(now)
keep_ttl()
redis.call('PUBLISH', ARGV[1], cjson.encode({type = 'joined', joinedAt = now}))
return {'joined-now', tostring(now)}
`;

/**
 * Claims the delivery of a joined run's due callbacks. ARGV[2] the claimer's token, ARGV[3] the
 * claim's lease (ms), ARGV[4] the run id. Returns {'none'} when nothing is due (the run leaves the
 * outbox), {'gone'} when the run's keys are gone (it leaves the outbox too), {'busy'} while another
 * live claim holds it, else {'claimed', callbacks JSON, totals JSON, name...} with the names still
 * pending.
 */
export const claimCallbacksLua =
  runPrelude +
  /* lua */ `
local state = redis.call('HGET', META, 'state')
if not state then
  -- Its keys expired (or were lost) before its callbacks were delivered: nothing is left to deliver.
  redis.call('ZREM', CALLBACKS_DUE, ARGV[4])
  return {'gone'}
end
local runId = redis.call('HGET', META, 'runId')
if state ~= 'joined' then return {'none'} end
local callbacks = redis.call('HGET', META, 'callbacks')
local pending = {}
if callbacks then
  for _, cb in ipairs(cjson.decode(callbacks)) do
    if redis.call('HGET', META, 'cb:' .. cb.name) == 'pending' then table.insert(pending, cb.name) end
  end
end
if #pending == 0 then
  redis.call('ZREM', CALLBACKS_DUE, runId)
  redis.call('HDEL', META, 'cbClaim')
  keep_ttl()
  return {'none'}
end
local now = now_ms()
local claim = redis.call('HGET', META, 'cbClaim')
if claim then
  local token, expiry = string.match(claim, '^(.*)@(%d+)$')
  if token ~= ARGV[2] and tonumber(expiry) > now then return {'busy'} end
end
redis.call('HSET', META, 'cbClaim', ARGV[2] .. '@' .. (now + tonumber(ARGV[3])))
keep_ttl()
local reply = {'claimed', callbacks, redis.call('HGET', META, 'totalsAtJoin')}
for _, name in ipairs(pending) do table.insert(reply, name) end
return reply
`;

/**
 * ARGV[2] callback name, ARGV[3] its new state: 'delivered' (from 'pending', once its job is in the
 * queue), 'started' (its job is running), or its job's final 'completed' or 'failed'. A state never
 * moves back. With nothing left pending, the run leaves the outbox. Returns the state now recorded.
 */
export const callbackStateLua =
  runPrelude +
  /* lua */ `
local field = 'cb:' .. ARGV[2]
local order = {pending = 1, delivered = 2, started = 3, completed = 4, failed = 4}
local current = redis.call('HGET', META, field)
if not current or current == 'skipped' then return current or false end
if (order[ARGV[3]] or 0) > (order[current] or 0) then
  redis.call('HSET', META, field, ARGV[3])
  current = ARGV[3]
end
local callbacks = redis.call('HGET', META, 'callbacks')
local left = 0
if callbacks then
  for _, cb in ipairs(cjson.decode(callbacks)) do
    if redis.call('HGET', META, 'cb:' .. cb.name) == 'pending' then left = left + 1 end
  end
end
if left == 0 then
  redis.call('ZREM', CALLBACKS_DUE, redis.call('HGET', META, 'runId'))
  redis.call('HDEL', META, 'cbClaim')
end
keep_ttl()
redis.call('PUBLISH', ARGV[1], cjson.encode({type = 'callback', name = ARGV[2], state = current}))
return current
`;

/**
 * Takes the most overdue runs of one of the queue's schedules, the pending runs or the callbacks
 * outbox (sorted sets scored by when each run is next due for a look, Redis clock), and pushes each
 * back by ARGV[2] ms, so the next caller takes the next most overdue ones. However many runs wait and
 * whatever they wait for, each is taken in turn: how soon depends on how many runs the checkers take
 * between them, never on a run's place in a list. KEYS[1] the schedule; ARGV[1] how many at most.
 * Returns the run ids taken.
 */
export const claimDueLua =
  common +
  /* lua */ `
local now = now_ms()
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
for _, id in ipairs(ids) do redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[2]), id) end
return ids
`;

/** ARGV[2] consumer id, ARGV[3] its record (JSON). The heartbeat time is Redis's. Returns it. */
export const saveConsumerLua =
  runPrelude +
  /* lua */ `
local now = now_ms()
redis.call('HSET', CONSUMERS, ARGV[2], ARGV[3])
redis.call('ZADD', BEATS, now, ARGV[2])
if redis.call('EXISTS', META) == 0 then
  -- Waiting for a run not created yet (or long gone): shown in status, but no key lives for ever.
  redis.call('PEXPIRE', CONSUMERS, ${WAITING_CONSUMER_TTL_MS})
  redis.call('PEXPIRE', BEATS, ${WAITING_CONSUMER_TTL_MS})
  return now
end
if redis.call('HGET', META, 'state') ~= 'joined' then
  redis.call('PERSIST', CONSUMERS)
  redis.call('PERSIST', BEATS)
end
keep_ttl()
return now
`;

/** ARGV[2] consumer id or '*', ARGV[3] the cancel event (JSON) to publish. */
export const requestCancelLua =
  runPrelude +
  /* lua */ `
if redis.call('EXISTS', META) == 0 then return 0 end
redis.call('SADD', CANCEL, ARGV[2])
keep_ttl()
redis.call('PUBLISH', ARGV[1], ARGV[3])
return 1
`;

/**
 * Marks the run cancelled: producers stop (their heartbeat says so), registering is refused, and
 * every join check cancels the jobs not yet started. The caller then tells every process on the
 * events channel. Returns {'cancelled', at} the first time, {'already', at} after, {'joined',
 * joinedAt} for a run that has joined (a no-op).
 */
export const cancelRunLua =
  runPrelude +
  /* lua */ `
local state = redis.call('HGET', META, 'state')
if not state then return redis.error_reply('NO_RUN') end
if state == 'joined' then return {'joined', redis.call('HGET', META, 'joinedAt')} end
local at = redis.call('HGET', META, 'cancelledAt')
if at then return {'already', at} end
local now = now_ms()
redis.call('HSET', META, 'cancelledAt', now)
return {'cancelled', tostring(now)}
`;

/**
 * Starts the run's record on one shard (every create calls it, on every shard; with one shard the
 * shard's meta is the run's). ARGV[1] the run's id prefix, ARGV[2] keepCompleted, ARGV[3]
 * keepFailed (-1: keep all), ARGV[4] the run's retention ms. A record left by an earlier creation of
 * the same run id (its keys not all expired yet) is wiped first: a run id used again starts clean.
 * Returns 1 when it started the record, 0 when it was there.
 */
export const initShardLua =
  shardPrelude +
  /* lua */ `
local function creation(p) return tonumber(string.match(p, '%+(%d+)$')) end
if PREFIX == ARGV[1] then return 0 end
-- a create that read an earlier creation, arriving after a newer one started here: not its record
if PREFIX and creation(PREFIX) > creation(ARGV[1]) then return 0 end
-- an earlier creation's leftovers go (one shard: its meta is the run's, already new, so it stays)
for i = 2, RUN_OWNED do redis.call('DEL', KEYS[i]) end
if redis.call('HEXISTS', SMETA, 'runId') == 0 then redis.call('DEL', SMETA) end
redis.call('HSET', SMETA, 'shardPrefix', ARGV[1], 'keepCompleted', ARGV[2], 'keepFailed', ARGV[3],
  'runRetentionMs', ARGV[4])
return 1
`;

/**
 * Marks one job cancelled on its shard. KEYS[FIXED+1] the job's hash; ARGV[1] job id. Returns
 * 'unknown' (no such job on this shard: the caller asks the next one), 'finished' (already terminal:
 * a no-op), 'after-join' (put back to work after the run joined: not the run's to cancel), or
 * 'cancelling' (marked: the caller removes it if it has not started, else tells whoever holds it to
 * abort it). The job is looked for first: a shard that closed says nothing about another's jobs.
 */
export const cancelJobLua =
  shardPrelude +
  /* lua */ `
local id, jk = ARGV[1], KEYS[FIXED + 1]
if not owned(id) then return 'unknown' end
local open = redis.call('SISMEMBER', OPEN, id) == 1
if redis.call('EXISTS', jk) == 0 then
  if not open then return 'unknown' end
elseif redis.call('HEXISTS', jk, 'finishedOn') == 1 then
  return 'finished'
elseif not open and redis.call('HEXISTS', SMETA, 'closedAt') == 1 then
  return 'after-join'
end
redis.call('SADD', CANCELLED, id)
keep_ttl()
return 'cancelling'
`;

/** ARGV[1..] job ids about to be removed because their run was cancelled. */
export const markCancelledLua =
  shardPrelude +
  /* lua */ `
if not PREFIX or redis.call('HEXISTS', SMETA, 'closedAt') == 1 then return 0 end
local n = 0
for i = 1, #ARGV do
  if owned(ARGV[i]) then
    redis.call('SADD', CANCELLED, ARGV[i])
    n = n + 1
  end
end
return n
`;

/**
 * A producer instance reports done. KEYS[FIXED+1] its put bitmap; ARGV[1] instance, ARGV[2] how
 * many of its jobs on this shard it saw acknowledged. The instance is fenced here (a put after done
 * is refused: it could land after the join) and its bitmap dropped (no put of it is on its way).
 * Returns how many of those the shard does not hold (recorded once as lostAcks, never hidden).
 */
export const tallyProducerLua =
  shardPrelude +
  /* lua */ `
if not PREFIX then return redis.error_reply('NO_RUN') end
local missing = tonumber(ARGV[2]) - tonumber(redis.call('HGET', PRODUCED_BY, ARGV[1]) or '0')
if missing < 0 then missing = 0 end
if redis.call('HSETNX', SMETA, 'tallied:' .. ARGV[1], missing) == 1 and missing > 0 then
  redis.call('HINCRBY', SMETA, 'lostAcks', missing)
end
redis.call('SADD', FENCED, ARGV[1])
redis.call('DEL', KEYS[FIXED + 1])
keep_ttl()
return tonumber(redis.call('HGET', SMETA, 'tallied:' .. ARGV[1]))
`;

/** BullMQ's keys of a shard that an atomic put writes, in the order `putJobs` receives them after SHARD_KEYS. */
export const PUT_QUEUE_KEY_NAMES = ['wait', 'meta', 'id', 'events', 'marker', 'active'] as const;

/**
 * A producer's put, atomic: stores the jobs in BullMQ's queue and acknowledges them in the run in one
 * script, so no job is ever stored but uncounted and a fenced instance writes nothing.
 * KEYS[FIXED+1..FIXED+6] the shard's BullMQ keys (PUT_QUEUE_KEY_NAMES), KEYS[FIXED+7] the instance's
 * put bitmap, then one job hash per job. ARGV[1] instance, ARGV[2] timestamp (ms), ARGV[3] the jobs'
 * BullMQ options as JSON (without jobId), then per job: its seq in the instance ('' for a put with
 * an idempotency key), id, name, data.
 *
 * A job is stored exactly as BullMQ's addStandardJob stores it (hash fields, the wait list, the
 * worker marker, the 'added' and 'waiting' events), so BullMQ's workers, Bull Board and QueueEvents
 * see an ordinary job. Whether a put was stored before is an exact record, not a guess from order:
 * bit <seq> of the instance's bitmap (a put sent again after a lost reply, or overtaken by a later
 * one after a NOSCRIPT fallback, finds its bits set and adds nothing), and for a keyed put the run's
 * set of accepted keys. An id that exists without such a record is refused (ID_TAKEN) before
 * anything is written. Returns {acknowledged now, stored by an earlier send}.
 */
export const putJobsLua =
  shardPrelude +
  /* lua */ `
local WAIT, BMETA, ID, EVENTS, MARKER, ACTIVE =
  KEYS[FIXED + 1], KEYS[FIXED + 2], KEYS[FIXED + 3], KEYS[FIXED + 4], KEYS[FIXED + 5], KEYS[FIXED + 6]
local PUTS = KEYS[FIXED + 7]
local instance, timestamp, opts = ARGV[1], ARGV[2], ARGV[3]
if not PREFIX then return redis.error_reply('NO_RUN') end
if redis.call('SISMEMBER', FENCED, instance) == 1 then return redis.error_reply('FENCED') end
local jobs = (#ARGV - 3) / 4
-- First only read: what to store, and whether anything is wrong (then nothing is written).
local store, again, seen = {}, 0, {}
for i = 1, jobs do
  local at = 3 + (i - 1) * 4
  local seq, id = ARGV[at + 1], ARGV[at + 2]
  local jk = KEYS[FIXED + 7 + i]
  if not owned(id) then return redis.error_reply('NO_RUN') end
  -- A key the run accepted before (from any put) adds nothing and is nobody's to count again; a
  -- seq whose bit is set was stored by an earlier send of this very put.
  local keyed_before = seq == '' and (seen[id] or redis.call('SISMEMBER', KEYED, id) == 1)
  local sent_before = seq ~= '' and redis.call('GETBIT', PUTS, tonumber(seq)) == 1
  if keyed_before then
    -- nothing to do
  elseif sent_before then
    again = again + 1
  elseif redis.call('EXISTS', jk) == 1 then
    return redis.error_reply('ID_TAKEN ' .. id)
  else
    seen[id] = true
    store[#store + 1] = i
  end
end
local opts_head = string.sub(opts, 1, -2) .. (opts == '{}' and '' or ',') .. '"jobId":'
local max_events = redis.call('HGET', BMETA, 'opts.maxLenEvents')
if not max_events then
  max_events = 10000
  redis.call('HSET', BMETA, 'opts.maxLenEvents', max_events)
end
local added = {}
for _, i in ipairs(store) do
  local at = 3 + (i - 1) * 4
  local seq, id, name, data = ARGV[at + 1], ARGV[at + 2], ARGV[at + 3], ARGV[at + 4]
  redis.call('HSET', KEYS[FIXED + 7 + i], 'name', name, 'data', data,
    'opts', opts_head .. cjson.encode(id) .. '}', 'timestamp', timestamp, 'delay', 0, 'priority', 0)
  redis.call('XADD', EVENTS, '*', 'event', 'added', 'jobId', id, 'name', name)
  redis.call('XADD', EVENTS, 'MAXLEN', '~', max_events, '*', 'event', 'waiting', 'jobId', id)
  if seq == '' then redis.call('SADD', KEYED, id) else redis.call('SETBIT', PUTS, tonumber(seq), 1) end
  redis.call('SADD', OPEN, id)
  added[#added + 1] = id
end
if #added > 0 then
  redis.call('INCRBY', ID, #added)
  -- LPUSH of many ids leaves them as one LPUSH each would: the first put is the first taken.
  for from = 1, #added, 1000 do
    redis.call('LPUSH', WAIT, unpack(added, from, math.min(from + 999, #added)))
  end
  -- Wake a worker unless the queue is paused or at its global concurrency (BullMQ's marker rule).
  local q = redis.call('HMGET', BMETA, 'paused', 'concurrency')
  if not q[1] and not (q[2] and redis.call('LLEN', ACTIVE) >= tonumber(q[2])) then
    redis.call('ZADD', MARKER, 0, '0')
  end
  -- The bitmap is needed only while the instance may still send a put; retention bounds it anyway.
  local ms = tonumber(redis.call('HGET', SMETA, 'runRetentionMs') or '0')
  if ms > 0 then redis.call('PEXPIRE', PUTS, ms) end
end
count_produced(instance, #added)
keep_ttl()
return {#added, again}
`;

/**
 * Pairs (job id, 'completed'|'failed'|'cancelled') from ARGV[1]; KEYS[FIXED + i] the hash of entry i.
 * Counts each job once: when it leaves the open set. A job put back to work before its report
 * arrived (it is no longer finished) stays open for its new outcome. A counted job still in BullMQ
 * is marked (the 'cvAcct' field, and COUNTED_MARK in its data, which a consumer reads when the job is
 * taken again) and listed for conveyor's trimming. An id of another creation of the run id is
 * ignored. Returns {counted, duplicates, 'closed', totals, trim} or {counted, duplicates, 'open',
 * unfinished count, trim}, trim '1' when a counted list is past its keep; {0, 0, 'gone', '0', '0'}
 * when the run is gone.
 */
export const recordFinishedLua =
  shardPrelude +
  /* lua */ `
if not PREFIX then return {0, 0, 'gone', '0', '0'} end
local counted, dup, trim = 0, 0, false
-- Outcome counts are added once per call, not once per job.
local tally = {}
for i = 1, #ARGV / 2 do
  local id, outcome = ARGV[2 * i - 1], ARGV[2 * i]
  local jk = KEYS[FIXED + i]
  if not owned(id) then
    -- a job of an earlier run with this run id: not this run's to count
  elseif redis.call('SREM', OPEN, id) == 1 then
    -- One read: BullMQ stores 'name' with every job, so no name means the job is gone.
    local job = redis.call('HMGET', jk, 'name', 'finishedOn', 'data')
    if job[1] and not job[2] then
      -- put back to work since it finished: it stays open for its new outcome
      redis.call('SADD', OPEN, id)
    else
      if job[1] then
        redis.call('HSET', jk, 'cvAcct', outcome, 'data', counted_data(job[3]))
        if mark_counted(id, outcome) then trim = true end
      end
      tally[outcome] = (tally[outcome] or 0) + 1
      counted = counted + 1
    end
  else
    local mark = redis.call('HGET', jk, 'cvAcct')
    if mark and redis.call('HDEL', jk, 'cvReconciled') == 1 then
      -- the join check already counted it from BullMQ's record; this late report confirms it
    elseif mark == 'after-join' then
      redis.call('HSET', jk, 'cvAcct', outcome)
    elseif outcome == 'cancelled' and redis.call('SISMEMBER', CANCELLED, id) == 1 then
      -- a cancel reported by both its sides (a sweep removed the job a consumer had just refused):
      -- decided once, counted once, and no redelivery to warn about
    else
      dup = dup + 1
    end
  end
end
for outcome, n in pairs(tally) do redis.call('HINCRBY', SMETA, outcome, n) end
if dup > 0 then redis.call('HINCRBY', SMETA, 'duplicateFinishes', dup) end
keep_ttl()
local open = redis.call('SCARD', OPEN)
local trimmed = trim and '1' or '0'
if open == 0 and redis.call('HGET', SMETA, 'producersFinished') == '1' then
  local closed = close(now_ms(), redis.call('HGET', SMETA, 'pendingRetentionMs') or '0')
  return {counted, dup, closed[1], closed[2], trimmed}
end
return {counted, dup, 'open', tostring(open), trimmed}
`;

/**
 * A join callback's job finished (its state is recorded in its run): it joins the list conveyor
 * trims from, like a counted job. KEYS[FIXED+1] its hash; ARGV[1] job id, ARGV[2] outcome. Returns
 * '1' when a counted list is past its keep.
 */
export const countCallbackLua =
  shardPrelude +
  /* lua */ `
local id, jk = ARGV[1], KEYS[FIXED + 1]
if not PREFIX or not owned(id) or redis.call('HEXISTS', jk, 'finishedOn') == 0 then return '0' end
if redis.call('HGET', jk, 'cvAcct') == ARGV[2] then return '0' end
redis.call('HSET', jk, 'cvAcct', ARGV[2])
keep_ttl()
return mark_counted(id, ARGV[2]) and '1' or '0'
`;

/**
 * Trims BullMQ's finished set of this shard to the run's keep, from the list of counted jobs.
 * KEYS[FIXED+1] the counted list, KEYS[FIXED+2] BullMQ's completed or failed set, then per id its
 * hash and its logs; ARGV[1..] ids read from the list's old end. A job is removed only when it is
 * still finished there and counted (a job put back to work stays); each id leaves the list.
 * Returns how many jobs it removed.
 */
export const trimCountedLua =
  shardPrelude +
  /* lua */ `
local LIST, FINISHED = KEYS[FIXED + 1], KEYS[FIXED + 2]
local removed = 0
for i = 1, #ARGV do
  local id = ARGV[i]
  local jk, logs = KEYS[FIXED + 1 + 2 * i], KEYS[FIXED + 2 + 2 * i]
  if redis.call('LREM', LIST, -1, id) == 1 and redis.call('ZSCORE', FINISHED, id)
    and redis.call('HEXISTS', jk, 'cvAcct') == 1 then
    redis.call('ZREM', FINISHED, id)
    redis.call('DEL', jk, logs)
    removed = removed + 1
  end
end
return removed
`;

/**
 * A job marked counted (COUNTED_MARK) is about to run again: it was put back to work (a retry from
 * Bull Board or job.retry(), with or without fresh attempt counters). KEYS[FIXED+1] its hash; ARGV[1]
 * job id. Decided by the run's own record of the id (cvAcct), never by BullMQ's counters: re-opened
 * while the shard is open (its old outcome taken back), or recorded as work after the join.
 * Returns 'open' (still unfinished), 'reopened', 'after-join', 'uncounted' or 'gone' (no such run).
 */
export const reopenLua =
  shardPrelude +
  /* lua */ `
local id, jk = ARGV[1], KEYS[FIXED + 1]
if not PREFIX then return 'gone' end
if not owned(id) then return 'uncounted' end
if redis.call('SISMEMBER', OPEN, id) == 1 then return 'open' end
local mark = redis.call('HGET', jk, 'cvAcct')
if mark ~= 'completed' and mark ~= 'failed' and mark ~= 'cancelled' then return 'uncounted' end
if redis.call('HEXISTS', SMETA, 'closedAt') == 1 then
  redis.call('HSET', jk, 'cvAcct', 'after-join')
  redis.call('HINCRBY', SMETA, 'afterJoin', 1)
  keep_ttl()
  return 'after-join'
end
redis.call('HINCRBY', SMETA, mark, -1)
redis.call('HDEL', jk, 'cvAcct', 'cvReconciled')
redis.call('HINCRBY', SMETA, 'reopened', 1)
redis.call('SADD', OPEN, id)
return 'reopened'
`;

/**
 * Fences a dead (lost or superseded) instance on this shard: its later puts are refused and write
 * nothing. A put is stored and counted in one step, so nothing of it is half-way to settle.
 * KEYS[FIXED+1] its put bitmap (dropped); ARGV[1] instance.
 */
export const settleInstanceLua =
  shardPrelude +
  /* lua */ `
if not PREFIX then return 0 end
redis.call('SADD', FENCED, ARGV[1])
redis.call('DEL', KEYS[FIXED + 1])
keep_ttl()
return 1
`;

/**
 * The shard's half of the join, called once the run has every producer finished. ARGV[1] the run's
 * retention ms, ARGV[2] how often (ms) one reconcile pass may run across all processes. Returns
 * {'closed', totals} or {'open', unfinished count, reconcile cursor or '' when no pass is due}.
 */
export const closeShardLua =
  shardPrelude +
  /* lua */ `
if not PREFIX then return redis.error_reply('NO_RUN') end
if redis.call('HEXISTS', SMETA, 'closedAt') == 1 then
  keep_ttl()
  return {'closed', redis.call('HGET', SMETA, 'closedTotals')}
end
redis.call('HSET', SMETA, 'producersFinished', 1, 'pendingRetentionMs', ARGV[1])
local now = now_ms()
local open = redis.call('SCARD', OPEN)
if open == 0 then return close(now, ARGV[1]) end
local last = tonumber(redis.call('HGET', SMETA, 'reconciledAt') or '0')
if now - last < tonumber(ARGV[2]) then return {'open', tostring(open), ''} end
redis.call('HSET', SMETA, 'reconciledAt', now)
return {'open', tostring(open), redis.call('HGET', SMETA, 'reconcileCursor') or '0'}
`;

/**
 * One bounded reconcile pass over open jobs whose consumer may have died before reporting them.
 * KEYS[FIXED+1] BullMQ's failed set, KEYS[FIXED+1+i] the hash of ARGV[3+i]; ARGV[1] the SSCAN cursor
 * to resume from next time, ARGV[2] the run's retention ms, ARGV[3] the grace (ms), ARGV[4..] open ids
 * the caller scanned.
 * A finished job is counted from BullMQ's record (cancelled when its failure is conveyor's cancel),
 * a vanished one as removed (cancelled when someone cancelled it), each only after it stayed that
 * way for a grace measured on Redis's clock (a live consumer's report takes milliseconds). conveyor
 * trims only counted jobs, so a vanished open job is one someone removed. Returns like closeShard,
 * plus '1' when a counted list is past its keep.
 */
export const reconcileLua =
  shardPrelude +
  /* lua */ `
if not PREFIX then return redis.error_reply('NO_RUN') end
local now = now_ms()
local grace = tonumber(ARGV[3])
local CANCEL_MARK = '${CANCELLED_REASON}'
local trim = false
for i = 4, #ARGV do
  local id, jk = ARGV[i], KEYS[FIXED + i - 2]
  if redis.call('SISMEMBER', OPEN, id) == 1 then
    local gone = redis.call('EXISTS', jk) == 0
    local finished = (not gone) and redis.call('HEXISTS', jk, 'finishedOn') == 1
    if gone or finished then
      local since = tonumber(redis.call('HGET', SUSPECT, id))
      if not since then
        redis.call('HSET', SUSPECT, id, now)
      elseif since < now - grace then
        redis.call('SREM', OPEN, id)
        redis.call('HDEL', SUSPECT, id)
        if gone then
          local outcome = 'removed'
          if redis.call('SISMEMBER', CANCELLED, id) == 1 then outcome = 'cancelled' end
          redis.call('HINCRBY', SMETA, outcome, 1)
        else
          local outcome = 'completed'
          if redis.call('ZSCORE', KEYS[FIXED + 1], id) then
            outcome = 'failed'
            local reason = redis.call('HGET', jk, 'failedReason') or ''
            if string.sub(reason, 1, #CANCEL_MARK) == CANCEL_MARK then outcome = 'cancelled' end
          end
          local data = redis.call('HGET', jk, 'data')
          redis.call('HSET', jk, 'cvAcct', outcome, 'cvReconciled', 1, 'data', counted_data(data))
          redis.call('HINCRBY', SMETA, outcome, 1)
          redis.call('HINCRBY', SMETA, 'reconciled', 1)
          if mark_counted(id, outcome) then trim = true end
        end
      end
    else
      redis.call('HDEL', SUSPECT, id)
    end
  end
end
redis.call('HSET', SMETA, 'reconcileCursor', ARGV[1])
local open = redis.call('SCARD', OPEN)
local trimmed = trim and '1' or '0'
if open == 0 and redis.call('HGET', SMETA, 'producersFinished') == '1' then
  local closed = close(now, ARGV[2])
  return {closed[1], closed[2], '', trimmed}
end
return {'open', tostring(open), '', trimmed}
`;

/**
 * The callback job's mark on the shard that holds it (its own slot): ARGV[1] callback name, ARGV[2]
 * 'check' to read it, or 'added' (its deliverer saw the add succeed) / 'started' (a consumer took it,
 * before its handler runs) to set it. A job can only leave the queue (trimmed, removed) after it
 * started, so a deliverer that finds no mark knows an add cannot duplicate one. Returns the mark or
 * false.
 */
export const callbackMarkLua =
  shardPrelude +
  /* lua */ `
if not PREFIX then return false end
local field = 'cbMark:' .. ARGV[1]
if ARGV[2] ~= 'check' then
  redis.call('HSET', SMETA, field, ARGV[2])
  keep_ttl()
end
return redis.call('HGET', SMETA, field) or false
`;

/**
 * Keeps a completed job's return value for the run's results (a run created with collectResults).
 * ARGV[1] job id, ARGV[2] the value (JSON), ARGV[3] the most bytes one job's value may take, ARGV[4]
 * the most all of the run's values on this shard may take. A value past either bound is refused
 * (RESULT_TOO_LARGE / RESULTS_FULL with the sizes), and nothing is stored. A retried job's value
 * replaces its earlier one. Returns the shard's result bytes.
 */
export const storeResultLua =
  shardPrelude +
  /* lua */ `
if not PREFIX then return redis.error_reply('NO_RUN') end
if not owned(ARGV[1]) then return 0 end
local size = string.len(ARGV[2])
if size > tonumber(ARGV[3]) then return redis.error_reply('RESULT_TOO_LARGE ' .. size .. ' ' .. ARGV[3]) end
local old = redis.call('HSTRLEN', RESULTS, ARGV[1])
local total = (tonumber(redis.call('HGET', SMETA, 'resultBytes')) or 0) - old + size
if total > tonumber(ARGV[4]) then return redis.error_reply('RESULTS_FULL ' .. total .. ' ' .. ARGV[4]) end
redis.call('HSET', RESULTS, ARGV[1], ARGV[2])
redis.call('HSET', SMETA, 'resultBytes', total)
keep_ttl()
return total
`;
