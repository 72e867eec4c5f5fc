/**
 * What the run scripts share: the Lua preludes that bind each key to its local (generated from
 * script-keys.ts), the helpers run and shard scripts use, and the constants they write into Lua.
 */
import {
  luaKeyLocals,
  luaQueueWideSet,
  RUN_SCRIPT_KEYS,
  SHARD_FIXED,
  SHARD_RUN_KEYS,
  SHARD_SCRIPT_KEYS,
} from '../script-keys.js';

/** How long the record of a consumer waiting for a run that does not exist lives without a heartbeat. */
export const WAITING_CONSUMER_TTL_MS = 3_600_000;

/** How a counted job is marked in its stored data, so the consumer that takes it again asks its run. */
export const COUNTED_MARK = ',"counted":true}';

/** How a cancelled job's failure reason begins in BullMQ (the reconcile counts such a job cancelled). */
export const CANCELLED_REASON = 'conveyor: cancelled';

export const common = /* lua */ `
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
`;

export const runPrelude =
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

export const shardPrelude =
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
