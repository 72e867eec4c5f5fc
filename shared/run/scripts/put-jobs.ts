import { shardPrelude } from './prelude.js';

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
 *
 * KEYS: the shard's fixed keys, in SHARD_SCRIPT_KEYS order (script-keys.ts), then from
 * KEYS[FIXED + 1] the per-call keys named above. ARGV: as above, from ARGV[1].
 */
export const putJobsLua =
  shardPrelude +
  /* lua */ `
local WAIT, BMETA, ID, EVENTS, MARKER, ACTIVE =
  KEYS[FIXED + 1], KEYS[FIXED + 2], KEYS[FIXED + 3], KEYS[FIXED + 4], KEYS[FIXED + 5], KEYS[FIXED + 6]
local PUTS = KEYS[FIXED + 7]
local instance, timestamp, opts = ARGV[1], ARGV[2], ARGV[3]
if not PREFIX then return redis.error_reply('NO_RUN') end
local jobs = (#ARGV - 3) / 4
-- A fenced instance writes nothing, but a send of a put it stored before the fence (its reply lost)
-- is answered truly: stored before.
local fenced = redis.call('SISMEMBER', FENCED, instance) == 1
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
  elseif fenced then
    return redis.error_reply('FENCED')
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
end
count_produced(instance, #added)
keep_ttl()
return {#added, again}
`;
