/**
 * The run protocol's Lua scripts. Every decision that more than one process could race on
 * (registering, acknowledging, finishing, losing a producer, joining) happens inside one script, so
 * Redis serialises it and no coordinator process has to stay alive.
 *
 * Common layout: KEYS = [meta, producers, leases, open, early, runIndex, keyed];
 * ARGV[1] = in-flight set prefix, ARGV[2] = BullMQ job key prefix, ARGV[3] = events channel,
 * script-specific arguments from ARGV[4]. Keys built inside a script (job hashes, in-flight sets)
 * share the queue's hash tag, so every script stays in one cluster slot.
 */

const prelude = /* lua */ `
local RECONCILE_GRACE_MS = 2000

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

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

-- An id a producer sent: count it once, whether its job already finished or not.
local function acknowledge(id)
  if redis.call('SREM', KEYS[5], id) == 1 then return 1 end
  if redis.call('HEXISTS', ARGV[2] .. id, 'cvAcct') == 1 then return 0 end
  return redis.call('SADD', KEYS[4], id)
end

-- A producer whose lease ran out: mark it lost and settle what it had in flight. Ids whose job
-- exists in BullMQ were added (the add reached Redis) and count as produced; the rest never arrived.
local function lose_producer(pid, now)
  redis.call('ZREM', KEYS[3], pid)
  local rec = load_producer(pid)
  if not rec or rec.state ~= 'running' then return end
  local inflight = ARGV[1] .. pid
  local n = 0
  for _, id in ipairs(redis.call('SMEMBERS', inflight)) do
    if redis.call('SISMEMBER', KEYS[5], id) == 1 or redis.call('EXISTS', ARGV[2] .. id) == 1 then
      n = n + acknowledge(id)
    end
  end
  redis.call('DEL', inflight)
  rec.state = 'lost'
  rec.lostAt = now
  rec.produced = (rec.produced or 0) + n
  save_producer(pid, rec)
  redis.call('HINCRBY', KEYS[1], 'produced', n)
  redis.call('HINCRBY', KEYS[1], 'lostProducers', 1)
end

-- Jobs BullMQ finished whose consumer died before reporting them: read the outcome from BullMQ.
-- A job whose hash is gone was removed by hand (or trimmed after finishing): count it as removed.
local function reconcile(limit, now, grace)
  local open = redis.call('SCARD', KEYS[4])
  if open == 0 or open > limit then return open end
  for _, id in ipairs(redis.call('SMEMBERS', KEYS[4])) do
    local jk = ARGV[2] .. id
    if redis.call('EXISTS', jk) == 0 then
      redis.call('SREM', KEYS[4], id)
      redis.call('HINCRBY', KEYS[1], 'removed', 1)
    else
      local finished = tonumber(redis.call('HGET', jk, 'finishedOn'))
      -- A live consumer reports within milliseconds; the grace keeps the check from racing it.
      if finished and finished < now - grace then
        local outcome = 'completed'
        if redis.call('ZSCORE', ARGV[2] .. 'failed', id) then outcome = 'failed' end
        redis.call('SREM', KEYS[4], id)
        redis.call('HSET', jk, 'cvAcct', 'reconciled')
        redis.call('HINCRBY', KEYS[1], outcome, 1)
        redis.call('HINCRBY', KEYS[1], 'reconciled', 1)
      end
    end
  end
  return redis.call('SCARD', KEYS[4])
end

-- The distributed queue.join(): every expected producer registered and finished (done or lost),
-- and no acknowledged job unfinished. Flips the run to joined exactly once.
local function try_join(reconcile_limit)
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
  local open = reconcile(reconcile_limit, now, RECONCILE_GRACE_MS)
  if open > 0 then return {'jobs-unfinished', tostring(open)} end
  local m = redis.call('HMGET', KEYS[1], 'produced', 'completed', 'failed', 'removed', 'lostProducers')
  local totals = cjson.encode({produced = tonumber(m[1]) or 0, completed = tonumber(m[2]) or 0,
    failed = tonumber(m[3]) or 0, removed = tonumber(m[4]) or 0, lostProducers = tonumber(m[5]) or 0})
  redis.call('HSET', KEYS[1], 'state', 'joined', 'joinedAt', now,
    'unexpected', redis.call('SCARD', KEYS[5]), 'totalsAtJoin', totals)
  redis.call('PUBLISH', ARGV[3], cjson.encode({type = 'joined', joinedAt = now}))
  return {'joined-now', tostring(now)}
end
`;

/**
 * ARGV[4] runId, ARGV[5] expected producers, ARGV[6] lease ms. Returns 1 when created, 0 when it
 * already existed.
 */
export const createRunLua =
  prelude +
  /* lua */ `
local expected = redis.call('HGET', KEYS[1], 'expectedProducers')
if expected then
  if tonumber(expected) ~= tonumber(ARGV[5]) then
    return redis.error_reply('EXPECTED_MISMATCH ' .. expected)
  end
  return 0
end
local now = now_ms()
redis.call('HSET', KEYS[1], 'runId', ARGV[4], 'expectedProducers', ARGV[5], 'createdAt', now,
  'state', 'pending', 'produced', 0, 'completed', 0, 'failed', 0, 'removed', 0,
  'leaseMs', ARGV[6], 'lastSeenAt', now)
redis.call('ZADD', KEYS[6], 'NX', now, ARGV[4])
return 1
`;

/** ARGV[4] producer id, ARGV[5] JSON info {host,pid}, ARGV[6] lease ms. Returns the Redis time. */
export const registerProducerLua =
  prelude +
  /* lua */ `
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return redis.error_reply('NO_RUN') end
if state == 'joined' then return redis.error_reply('JOINED') end
local now = now_ms()
local rec = load_producer(ARGV[4])
if rec then
  if rec.state ~= 'running' then return redis.error_reply('FINISHED ' .. rec.state) end
else
  local expected = tonumber(redis.call('HGET', KEYS[1], 'expectedProducers'))
  if redis.call('HLEN', KEYS[2]) >= expected then return redis.error_reply('FULL ' .. expected) end
  rec = cjson.decode(ARGV[5])
  rec.state = 'running'
  rec.produced = 0
  rec.startedAt = now
end
rec.heartbeatAt = now
save_producer(ARGV[4], rec)
redis.call('ZADD', KEYS[3], now + tonumber(ARGV[6]), ARGV[4])
return now
`;

/** ARGV[4] producer id, ARGV[5] lease ms. Returns the producer's state ('running' renews the lease). */
export const heartbeatProducerLua =
  prelude +
  /* lua */ `
local rec = load_producer(ARGV[4])
if not rec then return 'missing' end
if rec.state ~= 'running' then return rec.state end
local now = now_ms()
observe(now)
rec.heartbeatAt = now
save_producer(ARGV[4], rec)
redis.call('ZADD', KEYS[3], now + tonumber(ARGV[5]), ARGV[4])
return 'running'
`;

/**
 * ARGV[4] producer id, ARGV[5..] job ids whose add Redis acknowledged ('k:<id>' for an id put with an
 * idempotency key). Returns how many were new.
 */
export const ackAddedLua =
  prelude +
  /* lua */ `
local inflight = ARGV[1] .. ARGV[4]
local n = 0
for i = 5, #ARGV do
  local id = ARGV[i]
  -- 'k:' marks an id put with an idempotency key (':' never appears in a BullMQ job id)
  if string.sub(id, 1, 2) == 'k:' then
    id = string.sub(id, 3)
    redis.call('SADD', KEYS[7], id)
  end
  redis.call('SREM', inflight, id)
  n = n + acknowledge(id)
end
if n > 0 then
  redis.call('HINCRBY', KEYS[1], 'produced', n)
  if redis.call('HGET', KEYS[1], 'state') == 'joined' then redis.call('HINCRBY', KEYS[1], 'late', n) end
  local rec = load_producer(ARGV[4])
  if rec then
    rec.produced = (rec.produced or 0) + n
    save_producer(ARGV[4], rec)
  end
end
return n
`;

/**
 * ARGV[4] producer id, ARGV[5] reconcile limit, ARGV[6] how many jobs the producer itself saw
 * acknowledged. Marks it done, then tries to join. A producer that counted more than the run holds
 * means Redis lost acknowledged writes (a restart that rolled back): recorded as lostAcks, never hidden.
 */
export const producerDoneLua =
  prelude +
  /* lua */ `
local rec = load_producer(ARGV[4])
if not rec then return redis.error_reply('NO_PRODUCER') end
if rec.state == 'running' then
  rec.state = 'done'
  rec.doneAt = now_ms()
  local missing = tonumber(ARGV[6]) - (rec.produced or 0)
  if missing > 0 then
    rec.lostAcks = missing
    redis.call('HINCRBY', KEYS[1], 'lostAcks', missing)
  end
  save_producer(ARGV[4], rec)
end
redis.call('ZREM', KEYS[3], ARGV[4])
local result = try_join(tonumber(ARGV[5]))
table.insert(result, 1, rec.state)
return result
`;

/**
 * ARGV[4] reconcile limit, then pairs (job id, 'completed'|'failed'). Counts each job once: through
 * the open set, or (finished before its producer acknowledged it) through a mark on BullMQ's job
 * hash. Returns {counted, duplicates, join reason, join detail}.
 */
export const recordFinishedLua =
  prelude +
  /* lua */ `
if not redis.call('HGET', KEYS[1], 'state') then return {0, 0, 'no-run', '0'} end
local counted, dup = 0, 0
for i = 5, #ARGV, 2 do
  local id, outcome = ARGV[i], ARGV[i + 1]
  local jk = ARGV[2] .. id
  if redis.call('SREM', KEYS[4], id) == 1 then
    if redis.call('EXISTS', jk) == 1 then redis.call('HSET', jk, 'cvAcct', outcome) end
    redis.call('HINCRBY', KEYS[1], outcome, 1)
    counted = counted + 1
  elseif redis.call('EXISTS', jk) == 1 and redis.call('HSETNX', jk, 'cvAcct', outcome) == 1 then
    redis.call('SADD', KEYS[5], id)
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
local result = {'jobs-unfinished', '1'}
if redis.call('SCARD', KEYS[4]) == 0 then result = try_join(tonumber(ARGV[4])) end
return {counted, dup, result[1], result[2]}
`;

/** ARGV[4] reconcile limit. */
export const tryJoinLua =
  prelude +
  /* lua */ `
return try_join(tonumber(ARGV[4]))
`;
