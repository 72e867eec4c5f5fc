/**
 * The run protocol's Lua scripts. Every decision that more than one process could race on
 * (registering, acknowledging, finishing, losing a producer, closing a shard, joining) happens inside
 * one script, so Redis serialises it and no coordinator process has to stay alive.
 *
 * A run's state is split by Redis Cluster slot. The run's own scripts touch only the queue's slot:
 * KEYS = [meta, producers, leases, runIndex], ARGV[1] = events channel, arguments from ARGV[2].
 * Each shard's scripts touch only that shard's slot (beside its BullMQ keys):
 * KEYS = [shard meta, open, early, keyed, producedBy, gone], ARGV[1] = in-flight set prefix,
 * ARGV[2] = BullMQ job key prefix, arguments from ARGV[3].
 *
 * The join stays exact across slots because every fact that crosses between them only ever moves
 * one way: "every producer has finished" (run → shard) and "this shard is closed, with these final
 * totals" (shard → run). A shard closes once it has heard the first and has no unfinished job; the run
 * joins, once, when it is shown every shard closed. With one shard both live in the same slot and
 * the shard's meta is the run's meta: counters and run fields never share a name.
 */

const common = /* lua */ `
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
`;

const runPrelude =
  common +
  /* lua */ `
local function load_producer(id)
  local raw = redis.call('HGET', KEYS[2], id)
  if raw then return cjson.decode(raw) end
  return nil
end

local function save_producer(id, rec)
  redis.call('HSET', KEYS[2], id, cjson.encode(rec))
end

-- Leases measure a process's silence, not Redis's: when no process reached the run for a long
-- stretch (Redis down, paused or restarting), push every lease back by that stretch instead of
-- declaring every producer lost the moment Redis returns.
local function observe(now)
  local last = tonumber(redis.call('HGET', KEYS[1], 'lastSeenAt'))
  redis.call('HSET', KEYS[1], 'lastSeenAt', now)
  local lease = tonumber(redis.call('HGET', KEYS[1], 'leaseMs') or '10000')
  if last and now - last > lease / 2 then
    for _, pid in ipairs(redis.call('ZRANGE', KEYS[3], 0, -1)) do
      redis.call('ZINCRBY', KEYS[3], now - last, pid)
    end
  end
end

-- A producer whose lease ran out is lost for good; each shard settles what it had in flight there.
local function lose_producer(pid, now)
  redis.call('ZREM', KEYS[3], pid)
  local rec = load_producer(pid)
  if not rec or rec.state ~= 'running' then return end
  rec.state = 'lost'
  rec.lostAt = now
  save_producer(pid, rec)
  redis.call('HINCRBY', KEYS[1], 'lostProducers', 1)
end
`;

const shardPrelude =
  common +
  /* lua */ `
local RECONCILE_GRACE_MS = 2000

-- An id a producer sent: count it once, whether its job already finished or not.
local function acknowledge(id)
  if redis.call('SREM', KEYS[3], id) == 1 then return 1 end
  if redis.call('HEXISTS', ARGV[2] .. id, 'cvAcct') == 1 then return 0 end
  return redis.call('SADD', KEYS[2], id)
end

local function count_produced(pid, n)
  if n == 0 then return end
  redis.call('HINCRBY', KEYS[1], 'produced', n)
  redis.call('HINCRBY', KEYS[5], pid, n)
  if redis.call('HEXISTS', KEYS[1], 'closedAt') == 1 then redis.call('HINCRBY', KEYS[1], 'late', n) end
end

-- A lost producer's in-flight ids on this shard: those whose job exists in BullMQ were added (the add
-- reached Redis) and count as produced; the rest never arrived.
local function settle_lost(pid)
  local inflight = ARGV[1] .. pid
  local n = 0
  for _, id in ipairs(redis.call('SMEMBERS', inflight)) do
    if redis.call('SISMEMBER', KEYS[3], id) == 1 or redis.call('EXISTS', ARGV[2] .. id) == 1 then
      n = n + acknowledge(id)
    end
  end
  redis.call('DEL', inflight)
  count_produced(pid, n)
end

-- Jobs BullMQ finished whose consumer died before reporting them: read the outcome from BullMQ.
-- A job whose hash is gone was removed by hand, or trimmed after finishing (removeOnComplete) while
-- its report was still on the way: it counts as removed only if it stays gone and unreported.
local function reconcile(limit, now)
  local open = redis.call('SCARD', KEYS[2])
  if open == 0 or open > limit then return open end
  for _, id in ipairs(redis.call('SMEMBERS', KEYS[2])) do
    local jk = ARGV[2] .. id
    if redis.call('EXISTS', jk) == 0 then
      local since = tonumber(redis.call('HGET', KEYS[6], id))
      if not since then
        redis.call('HSET', KEYS[6], id, now)
      elseif since < now - RECONCILE_GRACE_MS then
        redis.call('SREM', KEYS[2], id)
        redis.call('HDEL', KEYS[6], id)
        redis.call('HINCRBY', KEYS[1], 'removed', 1)
      end
    else
      local finished = tonumber(redis.call('HGET', jk, 'finishedOn'))
      -- A live consumer reports within milliseconds; the grace keeps the check from racing it.
      if finished and finished < now - RECONCILE_GRACE_MS then
        local outcome = 'completed'
        if redis.call('ZSCORE', ARGV[2] .. 'failed', id) then outcome = 'failed' end
        redis.call('SREM', KEYS[2], id)
        redis.call('HSET', jk, 'cvAcct', 'reconciled')
        redis.call('HINCRBY', KEYS[1], outcome, 1)
        redis.call('HINCRBY', KEYS[1], 'reconciled', 1)
      end
    end
  end
  return redis.call('SCARD', KEYS[2])
end

-- Every producer has finished and no acknowledged job here is unfinished: the shard's totals are final.
local function close(now)
  if redis.call('HEXISTS', KEYS[1], 'closedAt') == 0 then
    local m = redis.call('HMGET', KEYS[1], 'produced', 'completed', 'failed', 'removed')
    local totals = cjson.encode({produced = tonumber(m[1]) or 0, completed = tonumber(m[2]) or 0,
      failed = tonumber(m[3]) or 0, removed = tonumber(m[4]) or 0,
      unexpected = redis.call('SCARD', KEYS[3])})
    redis.call('HSET', KEYS[1], 'closedAt', now, 'closedTotals', totals)
    redis.call('DEL', KEYS[6])
  end
  return {'closed', redis.call('HGET', KEYS[1], 'closedTotals')}
end
`;

/**
 * ARGV[2] runId, ARGV[3] expected producers, ARGV[4] lease ms, ARGV[5] shard count. Returns 1 when
 * created, 0 when it already existed.
 */
export const createRunLua =
  runPrelude +
  /* lua */ `
local expected = redis.call('HGET', KEYS[1], 'expectedProducers')
if expected then
  if tonumber(expected) ~= tonumber(ARGV[3]) then
    return redis.error_reply('EXPECTED_MISMATCH ' .. expected)
  end
  local shards = redis.call('HGET', KEYS[1], 'shards') or '1'
  if tonumber(shards) ~= tonumber(ARGV[5]) then return redis.error_reply('SHARDS_MISMATCH ' .. shards) end
  return 0
end
local now = now_ms()
redis.call('HSET', KEYS[1], 'runId', ARGV[2], 'expectedProducers', ARGV[3], 'createdAt', now,
  'state', 'pending', 'leaseMs', ARGV[4], 'lastSeenAt', now, 'shards', ARGV[5])
redis.call('ZADD', KEYS[4], 'NX', now, ARGV[2])
return 1
`;

/** ARGV[2] producer id, ARGV[3] JSON info {host,pid}, ARGV[4] lease ms. Returns the Redis time. */
export const registerProducerLua =
  runPrelude +
  /* lua */ `
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return redis.error_reply('NO_RUN') end
if state == 'joined' then return redis.error_reply('JOINED') end
local now = now_ms()
local rec = load_producer(ARGV[2])
if rec then
  if rec.state ~= 'running' then return redis.error_reply('FINISHED ' .. rec.state) end
else
  local expected = tonumber(redis.call('HGET', KEYS[1], 'expectedProducers'))
  if redis.call('HLEN', KEYS[2]) >= expected then return redis.error_reply('FULL ' .. expected) end
  rec = cjson.decode(ARGV[3])
  rec.state = 'running'
  rec.produced = 0
  rec.startedAt = now
end
rec.heartbeatAt = now
save_producer(ARGV[2], rec)
redis.call('ZADD', KEYS[3], now + tonumber(ARGV[4]), ARGV[2])
return now
`;

/** ARGV[2] producer id, ARGV[3] lease ms. Returns the producer's state ('running' renews the lease). */
export const heartbeatProducerLua =
  runPrelude +
  /* lua */ `
local rec = load_producer(ARGV[2])
if not rec then return 'missing' end
if rec.state ~= 'running' then return rec.state end
local now = now_ms()
observe(now)
rec.heartbeatAt = now
save_producer(ARGV[2], rec)
redis.call('ZADD', KEYS[3], now + tonumber(ARGV[3]), ARGV[2])
return 'running'
`;

/**
 * ARGV[2] producer id, ARGV[3] jobs it saw acknowledged, ARGV[4] of those, how many no shard holds
 * (Redis lost acknowledged writes: a restart that rolled back, or a failover). Marks it done and
 * returns its state; the join check follows as its own step.
 */
export const producerDoneLua =
  runPrelude +
  /* lua */ `
local rec = load_producer(ARGV[2])
if not rec then return redis.error_reply('NO_PRODUCER') end
if rec.state == 'running' then
  rec.state = 'done'
  rec.doneAt = now_ms()
  rec.produced = tonumber(ARGV[3])
  if tonumber(ARGV[4]) > 0 then rec.lostAcks = tonumber(ARGV[4]) end
  save_producer(ARGV[2], rec)
end
redis.call('ZREM', KEYS[3], ARGV[2])
return rec.state
`;

/**
 * The run's half of the distributed queue.join(): every expected producer registered and finished
 * (done, or lost when its lease ran out). Returns {'producers-finished', '0', lost ids...} once that
 * holds (for ever after: both states are final), else why not.
 */
export const checkRunLua =
  runPrelude +
  /* lua */ `
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return {'no-run', '0'} end
if state == 'joined' then return {'joined', redis.call('HGET', KEYS[1], 'joinedAt')} end
local now = now_ms()
observe(now)
for _, pid in ipairs(redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now)) do
  lose_producer(pid, now)
end
local expected = tonumber(redis.call('HGET', KEYS[1], 'expectedProducers'))
local registered = redis.call('HLEN', KEYS[2])
if registered < expected then return {'producers-missing', tostring(expected - registered)} end
local running = redis.call('ZCARD', KEYS[3])
if running > 0 then return {'producers-running', tostring(running)} end
local result = {'producers-finished', '0'}
for _, raw in ipairs(redis.call('HVALS', KEYS[2])) do
  local rec = cjson.decode(raw)
  if rec.state == 'lost' then table.insert(result, rec.id) end
end
return result
`;

/**
 * ARGV[2..] every shard's close totals (JSON), as the shards returned them. Flips the run to joined
 * exactly once and records the totals; returns {'joined-now' | 'joined', joinedAt}.
 */
export const joinRunLua =
  runPrelude +
  /* lua */ `
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return {'no-run', '0'} end
if state == 'joined' then return {'joined', redis.call('HGET', KEYS[1], 'joinedAt')} end
local shards = tonumber(redis.call('HGET', KEYS[1], 'shards') or '1')
if #ARGV - 1 ~= shards then return redis.error_reply('SHARDS_MISMATCH ' .. shards) end
local sum = {produced = 0, completed = 0, failed = 0, removed = 0, unexpected = 0}
for i = 2, #ARGV do
  local t = cjson.decode(ARGV[i])
  for k, _ in pairs(sum) do sum[k] = sum[k] + (tonumber(t[k]) or 0) end
end
local now = now_ms()
local totals = cjson.encode({produced = sum.produced, completed = sum.completed, failed = sum.failed,
  removed = sum.removed, lostProducers = tonumber(redis.call('HGET', KEYS[1], 'lostProducers')) or 0})
redis.call('HSET', KEYS[1], 'state', 'joined', 'joinedAt', now, 'unexpected', sum.unexpected,
  'totalsAtJoin', totals)
redis.call('PUBLISH', ARGV[1], cjson.encode({type = 'joined', joinedAt = now}))
return {'joined-now', tostring(now)}
`;

/**
 * ARGV[3] producer id, ARGV[4..] job ids whose add Redis acknowledged ('k:<id>' for an id put with an
 * idempotency key). Returns how many were new.
 */
export const ackAddedLua =
  shardPrelude +
  /* lua */ `
local inflight = ARGV[1] .. ARGV[3]
local n = 0
for i = 4, #ARGV do
  local id = ARGV[i]
  -- 'k:' marks an id put with an idempotency key (':' never appears in a BullMQ job id)
  if string.sub(id, 1, 2) == 'k:' then
    id = string.sub(id, 3)
    redis.call('SADD', KEYS[4], id)
  end
  redis.call('SREM', inflight, id)
  n = n + acknowledge(id)
end
count_produced(ARGV[3], n)
return n
`;

/**
 * ARGV[3] producer id, ARGV[4] how many of its jobs on this shard the producer saw acknowledged.
 * Returns how many of those the shard does not hold (recorded once as lostAcks, never hidden).
 */
export const tallyProducerLua =
  shardPrelude +
  /* lua */ `
local missing = tonumber(ARGV[4]) - tonumber(redis.call('HGET', KEYS[5], ARGV[3]) or '0')
if missing < 0 then missing = 0 end
if redis.call('HSETNX', KEYS[1], 'tallied:' .. ARGV[3], missing) == 1 and missing > 0 then
  redis.call('HINCRBY', KEYS[1], 'lostAcks', missing)
end
return tonumber(redis.call('HGET', KEYS[1], 'tallied:' .. ARGV[3]))
`;

/**
 * Pairs (job id, 'completed'|'failed') from ARGV[3]. Counts each job once: through the open set, or
 * (finished before its producer acknowledged it) through a mark on BullMQ's job hash. Returns
 * {counted, duplicates, 'closed', totals} or {counted, duplicates, 'open', unfinished count}.
 */
export const recordFinishedLua =
  shardPrelude +
  /* lua */ `
local counted, dup = 0, 0
for i = 3, #ARGV, 2 do
  local id, outcome = ARGV[i], ARGV[i + 1]
  local jk = ARGV[2] .. id
  if redis.call('SREM', KEYS[2], id) == 1 then
    if redis.call('EXISTS', jk) == 1 then redis.call('HSET', jk, 'cvAcct', outcome) end
    redis.call('HINCRBY', KEYS[1], outcome, 1)
    counted = counted + 1
  elseif redis.call('EXISTS', jk) == 1 and redis.call('HSETNX', jk, 'cvAcct', outcome) == 1 then
    redis.call('SADD', KEYS[3], id)
    redis.call('HINCRBY', KEYS[1], outcome, 1)
    counted = counted + 1
  elseif redis.call('HGET', jk, 'cvAcct') == 'reconciled' then
    -- the join check already counted it from BullMQ's record; this late report confirms it
    redis.call('HSET', jk, 'cvAcct', outcome)
  else
    dup = dup + 1
  end
end
if dup > 0 then redis.call('HINCRBY', KEYS[1], 'duplicateFinishes', dup) end
local open = redis.call('SCARD', KEYS[2])
if open == 0 and redis.call('HGET', KEYS[1], 'producersFinished') == '1' then
  local closed = close(now_ms())
  return {counted, dup, closed[1], closed[2]}
end
return {counted, dup, 'open', tostring(open)}
`;

/**
 * The shard's half of the join, called once the run has every producer finished. ARGV[3] reconcile
 * limit, ARGV[4..] the lost producers (settled here first). Returns {'closed', totals} or
 * {'open', unfinished count}.
 */
export const settleShardLua =
  shardPrelude +
  /* lua */ `
if redis.call('HEXISTS', KEYS[1], 'closedAt') == 1 then
  return {'closed', redis.call('HGET', KEYS[1], 'closedTotals')}
end
for i = 4, #ARGV do settle_lost(ARGV[i]) end
redis.call('HSET', KEYS[1], 'producersFinished', 1)
local now = now_ms()
local open = reconcile(tonumber(ARGV[3]), now)
if open > 0 then return {'open', tostring(open)} end
return close(now)
`;
