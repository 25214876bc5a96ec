-- streak_redis.lua: the handlers of tests/bench/scripts/streak.lua as one Redis Lua script,
-- the Redis peer of run_peer.sh (loaded with SCRIPT LOAD, called with EVALSHA by
-- bench_redis_peer.c, one call per event). Our own script; the logic is streak.lua's.
-- It records what Hearth records for these handlers: member state in a hash, a ledger
-- entry per points change, and one outbox entry per action (Hearth queues an action for
-- each tag, points change and send; the import stores them all).
--
-- KEYS[1] member hash (points, streak, last_checkin_day, last_order, tags)
-- KEYS[2] the member's ledger list     KEYS[3] the outbox list
-- ARGV    type, event id, member id, time (epoch s), local day number, data.amount

local member, ledger, outbox = KEYS[1], KEYS[2], KEYS[3]
local kind, ev, mid, t, day, amount = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local nactions = 0

-- One outbox entry: "action id, member, kind, time, body".
local function action(what, body)
  nactions = nactions + 1
  redis.call('RPUSH', outbox, ev .. '/' .. nactions .. ' ' .. mid .. ' ' .. what .. ' ' .. t .. ' ' .. body)
end

local function add_points(delta, reason)
  local balance = redis.call('HINCRBY', member, 'points', delta)
  redis.call('RPUSH', ledger, t .. ' ' .. delta .. ' ' .. balance .. ' ' .. reason .. ' ' .. ev)
  action('points', '{"delta":' .. delta .. ',"balance":' .. balance .. '}')
end

if kind == 'checkin' then
  local today = tonumber(day)
  local last = tonumber(redis.call('HGET', member, 'last_checkin_day'))
  -- A second check-in on the same day is ignored (and so is a late, out-of-order one).
  if last and today <= last then return 0 end
  local streak = 1
  if last == today - 1 then streak = (tonumber(redis.call('HGET', member, 'streak')) or 0) + 1 end
  redis.call('HSET', member, 'streak', streak, 'last_checkin_day', today)
  add_points(5, 'checkin')
  action('send', '{"template":"checkin_ok","vars":{"streak":' .. streak .. '}}')
elseif kind == 'member.joined' then
  local tags = redis.call('HGET', member, 'tags')
  if not tags then
    redis.call('HSET', member, 'tags', 'new')
  elseif not string.find(',' .. tags .. ',', ',new,', 1, true) then
    redis.call('HSET', member, 'tags', tags .. ',new')
  end
  action('tag', '{"tag":"new"}')
  add_points(20, 'welcome')
elseif kind == 'order.paid' then
  add_points(math.floor(tonumber(amount)), 'order')
  redis.call('HSET', member, 'last_order', t)
end
return nactions
