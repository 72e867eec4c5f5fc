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

/** The run's keys, in the order run scripts receive them. */
export const RUN_KEY_NAMES = [
  'meta',
  'producers',
  'leases',
  'runIndex',
  'credited',
  'unsettled',
  'pendingRuns',
  'expiries',
  'consumers',
  'beats',
  'cancel',
  'callbacksDue',
] as const;

/** A shard's fixed keys, in the order shard scripts receive them (per-call keys follow). */
export const SHARD_KEY_NAMES = [
  'meta',
  'open',
  'early',
  'keyed',
  'producedBy',
  'suspect',
  'fenced',
  'rejected',
  'cancelled',
  'results',
] as const;
const SHARD_FIXED = SHARD_KEY_NAMES.length;

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
local META, PRODUCERS, LEASES, RUN_INDEX, CREDITED, UNSETTLED, PENDING, EXPIRIES, CONSUMERS, BEATS, CANCEL =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9], KEYS[10], KEYS[11]
local CALLBACKS_DUE = KEYS[12]
local QUEUE_WIDE = {[4] = true, [7] = true, [8] = true, [12] = true}

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
local SMETA, OPEN, EARLY, KEYED, PRODUCED_BY, SUSPECT, FENCED, REJECTED, CANCELLED, RESULTS =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9], KEYS[10]
local FIXED = ${SHARD_FIXED}

-- An id its producer's in-flight set held: count it once, whether its job already finished or not.
-- Early finishes are rare and nothing in one call adds any, so an empty early set is looked at once.
local early_empty
local function acknowledge(id)
  if early_empty == nil then early_empty = redis.call('EXISTS', EARLY) == 0 end
  if not early_empty and redis.call('SREM', EARLY, id) == 1 then return 1 end
  return redis.call('SADD', OPEN, id)
end

local function count_produced(instance, n)
  if n == 0 then return end
  redis.call('HINCRBY', SMETA, 'produced', n)
  redis.call('HINCRBY', PRODUCED_BY, instance, n)
  if redis.call('HEXISTS', SMETA, 'closedAt') == 1 then redis.call('HINCRBY', SMETA, 'late', n) end
end

-- A closed shard's keys expire after the run's retention; anything written later gets the same TTL.
local function keep_ttl()
  local ms = tonumber(redis.call('HGET', SMETA, 'retentionMs') or '0')
  if ms > 0 and redis.call('HEXISTS', SMETA, 'closedAt') == 1 then
    for i = 1, FIXED do redis.call('PEXPIRE', KEYS[i], ms) end
  end
end

-- Every producer has finished and no acknowledged job here is unfinished: the shard's totals are final.
local function close(now, retention_ms)
  if redis.call('HEXISTS', SMETA, 'closedAt') == 0 then
    local m = redis.call('HMGET', SMETA, 'produced', 'completed', 'failed', 'removed', 'cancelled')
    local totals = cjson.encode({produced = tonumber(m[1]) or 0, completed = tonumber(m[2]) or 0,
      failed = tonumber(m[3]) or 0, removed = tonumber(m[4]) or 0, cancelled = tonumber(m[5]) or 0,
      unexpected = redis.call('SCARD', EARLY)})
    redis.call('HSET', SMETA, 'closedAt', now, 'closedTotals', totals, 'retentionMs', retention_ms)
    redis.call('DEL', SUSPECT)
  end
  keep_ttl()
  return {'closed', redis.call('HGET', SMETA, 'closedTotals')}
end
`;

/**
 * ARGV[2] runId, ARGV[3] expected producers, ARGV[4] lease ms, ARGV[5] shard count, ARGV[6]
 * retention ms after the join (0 = keep), ARGV[7] the run's join callbacks (JSON list, '' for none;
 * see callbacks.ts), ARGV[8] the run whose callback started this one ('' for none; KEYS[13] its meta,
 * which records this run as its next), ARGV[9] the
 * bounds of its collected results (JSON {maxJobBytes, maxRunBytes}; '' when it collects none).
 * Returns 1 when created, 0 when it already existed.
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
  return 0
end
if tonumber(ARGV[3]) < 1 then return redis.error_reply('EXPECTED_INVALID ' .. ARGV[3]) end
local now = now_ms()
prune_index(now)
redis.call('HSET', META, 'runId', ARGV[2], 'expectedProducers', ARGV[3], 'createdAt', now,
  'state', 'pending', 'leaseMs', ARGV[4], 'lastSeenAt', now, 'shards', ARGV[5], 'retentionMs', ARGV[6])
if ARGV[7] and ARGV[7] ~= '' then redis.call('HSET', META, 'callbacks', ARGV[7]) end
if ARGV[8] and ARGV[8] ~= '' then
  redis.call('HSET', META, 'afterRun', ARGV[8])
  -- KEYS[12 + 1]: the predecessor's meta when it is on the same queue; it names this run as its next
  local PREV = KEYS[13]
  if PREV and redis.call('EXISTS', PREV) == 1 then redis.call('HSET', PREV, 'nextRun', ARGV[2]) end
end
if ARGV[9] and ARGV[9] ~= '' then redis.call('HSET', META, 'collectResults', ARGV[9]) end
redis.call('ZADD', RUN_INDEX, 'NX', now, ARGV[2])
redis.call('ZADD', PENDING, 'NX', now, ARGV[2])
return 1
`;

/**
 * ARGV[2] producer id, ARGV[3] JSON info {host,pid}, ARGV[4] lease ms. Registering an id that is
 * still running supersedes its earlier incarnation (settled and fenced on every shard). Returns
 * {Redis time, incarnation}.
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
return {now, rec.incarnation}
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
local sum = {produced = 0, completed = 0, failed = 0, removed = 0, cancelled = 0, unexpected = 0}
for i = 2, #ARGV do
  local t = cjson.decode(ARGV[i])
  for k, _ in pairs(sum) do sum[k] = sum[k] + (tonumber(t[k]) or 0) end
end
local now = now_ms()
local totals = cjson.encode({produced = sum.produced, completed = sum.completed, failed = sum.failed,
  removed = sum.removed, cancelled = sum.cancelled,
  lostProducers = tonumber(redis.call('HGET', META, 'lostProducers')) or 0})
redis.call('HSET', META, 'state', 'joined', 'joinedAt', now, 'unexpected', sum.unexpected,
  'totalsAtJoin', totals)
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
keep_ttl()
return now
`;

/** ARGV[2] consumer id or '*', ARGV[3] the cancel event (JSON) to publish. */
export const requestCancelLua =
  runPrelude +
  /* lua */ `
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
 * Marks one job cancelled on its shard. KEYS[FIXED+1] the job's hash; ARGV[1] job id. Returns
 * 'joined' (the run's totals are final: a no-op), 'unknown' (no such job here), 'finished' (already
 * terminal: a no-op), or 'cancelling' (marked: the caller removes it if it has not started, else
 * tells whoever holds it to abort it).
 */
export const cancelJobLua =
  shardPrelude +
  /* lua */ `
local id, jk = ARGV[1], KEYS[FIXED + 1]
if redis.call('HEXISTS', SMETA, 'closedAt') == 1 then return 'joined' end
if redis.call('EXISTS', jk) == 0 then
  if redis.call('SISMEMBER', OPEN, id) == 0 then return 'unknown' end
elseif redis.call('HEXISTS', jk, 'finishedOn') == 1 then
  return 'finished'
end
redis.call('SADD', CANCELLED, id)
keep_ttl()
return 'cancelling'
`;

/** ARGV[1..] job ids about to be removed because their run was cancelled. */
export const markCancelledLua =
  shardPrelude +
  /* lua */ `
if redis.call('HEXISTS', SMETA, 'closedAt') == 1 then return 0 end
for i = 1, #ARGV do redis.call('SADD', CANCELLED, ARGV[i]) end
return #ARGV
`;

/**
 * KEYS[FIXED+1] the instance's in-flight set. ARGV[1] instance, ARGV[2..] job ids whose add Redis
 * acknowledged ('k:<id>' for an id put with an idempotency key). Only ids still in the in-flight set
 * count, so a repeated acknowledgement is a no-op. A fenced (lost or superseded) instance is refused:
 * its ids are recorded as rejected. Returns how many were new.
 */
export const ackAddedLua =
  shardPrelude +
  /* lua */ `
local inflight = KEYS[FIXED + 1]
local fenced = redis.call('SISMEMBER', FENCED, ARGV[1]) == 1
local n = 0
for i = 2, #ARGV do
  local id = ARGV[i]
  local keyed = false
  -- 'k:' marks an id put with an idempotency key (':' never appears in a BullMQ job id)
  if string.sub(id, 1, 2) == 'k:' then
    id = string.sub(id, 3)
    keyed = true
  end
  if redis.call('SREM', inflight, id) == 1 then
    if fenced then
      redis.call('SADD', REJECTED, id)
    else
      if keyed then redis.call('SADD', KEYED, id) end
      n = n + acknowledge(id)
    end
  end
end
if fenced then
  keep_ttl()
  return redis.error_reply('FENCED')
end
count_produced(ARGV[1], n)
keep_ttl()
return n
`;

/**
 * ARGV[1] instance, ARGV[2] how many of its jobs on this shard the instance saw acknowledged.
 * Returns how many of those the shard does not hold (recorded once as lostAcks, never hidden).
 */
export const tallyProducerLua =
  shardPrelude +
  /* lua */ `
local missing = tonumber(ARGV[2]) - tonumber(redis.call('HGET', PRODUCED_BY, ARGV[1]) or '0')
if missing < 0 then missing = 0 end
if redis.call('HSETNX', SMETA, 'tallied:' .. ARGV[1], missing) == 1 and missing > 0 then
  redis.call('HINCRBY', SMETA, 'lostAcks', missing)
end
keep_ttl()
return tonumber(redis.call('HGET', SMETA, 'tallied:' .. ARGV[1]))
`;

/** BullMQ's keys of a shard that an atomic put writes, in the order `putJobs` receives them after SHARD_KEYS. */
export const PUT_QUEUE_KEY_NAMES = ['wait', 'meta', 'id', 'events', 'marker', 'active'] as const;

/**
 * A producer's put, atomic: stores the jobs in BullMQ's queue and acknowledges them in the run in one
 * script, so no job is ever in flight (stored but not yet counted) and a fenced instance writes nothing.
 * KEYS[FIXED+1..FIXED+6] the shard's BullMQ keys (PUT_QUEUE_KEY_NAMES), then one job hash per job.
 * ARGV[1] instance, ARGV[2] timestamp (ms), ARGV[3] the jobs' BullMQ options as JSON (without jobId),
 * then per job: its seq in the instance (or 'k' for one put with an idempotency key), id, name, data.
 *
 * A job is stored exactly as BullMQ's addStandardJob stores it (hash fields, the wait list, the
 * worker marker, the 'added' and 'waiting' events), so BullMQ's workers, Bull Board and QueueEvents
 * see an ordinary job. Each instance's seqs reach a shard in increasing order, so a seq at or below
 * the shard's mark for the instance was stored by an earlier send of the same put (a reply lost to a
 * reconnect): it is reported as stored again, never added twice, even after BullMQ trimmed it. A keyed
 * id the run already accepted is skipped. Returns {acknowledged now, stored by an earlier send}.
 */
export const putJobsLua =
  shardPrelude +
  /* lua */ `
local WAIT, BMETA, ID, EVENTS, MARKER, ACTIVE =
  KEYS[FIXED + 1], KEYS[FIXED + 2], KEYS[FIXED + 3], KEYS[FIXED + 4], KEYS[FIXED + 5], KEYS[FIXED + 6]
local instance, timestamp, opts = ARGV[1], ARGV[2], ARGV[3]
if redis.call('SISMEMBER', FENCED, instance) == 1 then return redis.error_reply('FENCED') end
local mark_field = 'seq:' .. instance
local mark = tonumber(redis.call('HGET', SMETA, mark_field) or '-1')
local first_mark = mark
local opts_head = string.sub(opts, 1, -2) .. (opts == '{}' and '' or ',') .. '"jobId":'
local max_events = redis.call('HGET', BMETA, 'opts.maxLenEvents')
if not max_events then
  max_events = 10000
  redis.call('HSET', BMETA, 'opts.maxLenEvents', max_events)
end
local added, again, n = {}, 0, 0
local jobs = (#ARGV - 3) / 4
for i = 1, jobs do
  local at = 3 + (i - 1) * 4
  local seq, id, name, data = ARGV[at + 1], ARGV[at + 2], ARGV[at + 3], ARGV[at + 4]
  local jk = KEYS[FIXED + 6 + i]
  local fresh
  if seq == 'k' then
    fresh = redis.call('SISMEMBER', KEYED, id) == 0
  else
    seq = tonumber(seq)
    fresh = seq > mark
    if fresh then mark = seq else again = again + 1 end
  end
  if fresh and redis.call('EXISTS', jk) == 0 then
    redis.call('HSET', jk, 'name', name, 'data', data, 'opts', opts_head .. cjson.encode(id) .. '}',
      'timestamp', timestamp, 'delay', 0, 'priority', 0)
    redis.call('XADD', EVENTS, '*', 'event', 'added', 'jobId', id, 'name', name)
    redis.call('XADD', EVENTS, 'MAXLEN', '~', max_events, '*', 'event', 'waiting', 'jobId', id)
    if seq == 'k' then redis.call('SADD', KEYED, id) end
    n = n + acknowledge(id)
    added[#added + 1] = id
  end
end
if mark ~= first_mark then redis.call('HSET', SMETA, mark_field, mark) end
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
end
count_produced(instance, n)
keep_ttl()
return {n, again}
`;

/**
 * Triples (job id, 'completed'|'failed'|'cancelled', instance) from ARGV[1]; for entry i, KEYS[FIXED + 2i - 1]
 * is the instance's in-flight set and KEYS[FIXED + 2i] the job's hash. Counts each job once: through
 * the open set, or (finished before its producer acknowledged it) through the early set, which the
 * in-flight set vouches for even when BullMQ already deleted the job. Returns {counted, duplicates,
 * 'closed', totals} or {counted, duplicates, 'open', unfinished count}.
 */
export const recordFinishedLua =
  shardPrelude +
  /* lua */ `
local counted, dup = 0, 0
-- Outcome counts are added once per call, not once per job.
local tally = {}
local function count(outcome)
  tally[outcome] = (tally[outcome] or 0) + 1
  counted = counted + 1
end
for i = 1, #ARGV / 3 do
  local id, outcome, instance = ARGV[3 * i - 2], ARGV[3 * i - 1], ARGV[3 * i]
  local inflight, jk = KEYS[FIXED + 2 * i - 1], KEYS[FIXED + 2 * i]
  if redis.call('SREM', OPEN, id) == 1 then
    if redis.call('EXISTS', jk) == 1 then redis.call('HSET', jk, 'cvAcct', outcome) end
    count(outcome)
  elseif redis.call('SISMEMBER', inflight, id) == 1 and redis.call('SISMEMBER', FENCED, instance) == 1 then
    -- added by a fenced instance after it was settled: its acknowledgement will be refused
    redis.call('SREM', inflight, id)
    redis.call('HINCRBY', SMETA, 'rejectedRan', 1)
  elseif redis.call('SISMEMBER', inflight, id) == 1 then
    if redis.call('SADD', EARLY, id) == 1 then
      if redis.call('EXISTS', jk) == 1 then redis.call('HSET', jk, 'cvAcct', outcome) end
      count(outcome)
    else
      dup = dup + 1
    end
  elseif redis.call('SISMEMBER', REJECTED, id) == 1 then
    -- a fenced instance's job that a consumer took before it could be withdrawn: reported, not counted
    redis.call('SREM', REJECTED, id)
    redis.call('HINCRBY', SMETA, 'rejectedRan', 1)
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
if open == 0 and redis.call('HGET', SMETA, 'producersFinished') == '1' then
  local closed = close(now_ms(), redis.call('HGET', SMETA, 'pendingRetentionMs') or '0')
  return {counted, dup, closed[1], closed[2]}
end
return {counted, dup, 'open', tostring(open)}
`;

/**
 * A job put back to work (a retry from Bull Board or job.retry()) is about to run. KEYS[FIXED+1]
 * its hash, KEYS[FIXED+2] its instance's in-flight set; ARGV[1] job id. If the run had counted it:
 * re-opened while the shard is open (its old outcome taken back), or recorded as work after the join.
 * Returns 'open' (still unfinished: an ordinary retry), 'reopened', 'after-join' or 'uncounted'.
 */
export const reopenLua =
  shardPrelude +
  /* lua */ `
local id, jk, inflight = ARGV[1], KEYS[FIXED + 1], KEYS[FIXED + 2]
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
if redis.call('SREM', EARLY, id) == 1 and redis.call('SISMEMBER', inflight, id) == 1 then
  -- not acknowledged yet: its acknowledgement will open it
  return 'reopened'
end
redis.call('SADD', OPEN, id)
return 'reopened'
`;

/**
 * Settles a dead (lost or superseded) instance on this shard and fences it. KEYS[FIXED+1] its
 * in-flight set, KEYS[FIXED+1+i] the hash of ARGV[1+i]; ARGV[1] instance, ARGV[2..] in-flight ids the
 * caller read. An id whose job exists in BullMQ (or already finished) was added: it counts as
 * produced; the rest never arrived. Returns how many ids are still in flight (read again and repeat).
 */
export const settleInstanceLua =
  shardPrelude +
  /* lua */ `
local inflight = KEYS[FIXED + 1]
redis.call('SADD', FENCED, ARGV[1])
local n = 0
for i = 2, #ARGV do
  local id = ARGV[i]
  if redis.call('SREM', inflight, id) == 1 then
    if redis.call('SISMEMBER', EARLY, id) == 1 or redis.call('EXISTS', KEYS[FIXED + i]) == 1 then
      n = n + acknowledge(id)
    end
  end
end
count_produced(ARGV[1], n)
keep_ttl()
return redis.call('SCARD', inflight)
`;

/**
 * The shard's half of the join, called once the run has every producer finished. ARGV[1] the run's
 * retention ms, ARGV[2] how often (ms) one reconcile pass may run across all processes. Returns
 * {'closed', totals} or {'open', unfinished count, reconcile cursor or '' when no pass is due}.
 */
export const closeShardLua =
  shardPrelude +
  /* lua */ `
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
 * a vanished one as removed (cancelled when someone cancelled it), each only after it
 * stayed that way for a grace measured on Redis's clock (a live consumer's report takes
 * milliseconds; removeOnComplete may trim a job while its report is on the way). Returns like
 * closeShard.
 */
export const reconcileLua =
  shardPrelude +
  /* lua */ `
local now = now_ms()
local grace = tonumber(ARGV[3])
local CANCEL_MARK = '${CANCELLED_REASON}'
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
          redis.call('HSET', jk, 'cvAcct', outcome, 'cvReconciled', 1)
          redis.call('HINCRBY', SMETA, outcome, 1)
          redis.call('HINCRBY', SMETA, 'reconciled', 1)
        end
      end
    else
      redis.call('HDEL', SUSPECT, id)
    end
  end
end
redis.call('HSET', SMETA, 'reconcileCursor', ARGV[1])
local open = redis.call('SCARD', OPEN)
if open == 0 and redis.call('HGET', SMETA, 'producersFinished') == '1' then return close(now, ARGV[2]) end
return {'open', tostring(open), ''}
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
