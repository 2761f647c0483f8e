-- Applies one worker batch to the Redis views in a single atomic call.
-- Key layout (P = key prefix) is documented in docs/redis-keys.md.
--
-- ARGV[1] prefix, ARGV[2] event-id dedupe TTL (s), ARGV[3] JSON array of items:
--   dead letter: {tp=, o=, d=1}
--   event:       {tp=, o=, id=, y=type, t=event ms, k={identity keys}, c=channel bit,
--                 p=points, s={{kind, sku, location, qty, from}}, r=order id}
-- Returns one {status, result} per item, status one of:
--   new        first time this event is applied; result = "oneid|new_member|flags"
--   duplicate  event_id already applied from another offset (a re-sent event): no effect
--   replay     this very offset was applied before (redelivery): no effect, first result
--   dead       a dead letter counted;  replay_dead: counted before
local P = ARGV[1]
local ttl = tonumber(ARGV[2])
local batch = cjson.decode(ARGV[3])
local STATS = P .. 'stats'
local OFFSETS = P .. 'offsets'

local cursor = {}
local function last_offset(tp)
  local v = cursor[tp]
  if v == nil then
    v = tonumber(redis.call('HGET', OFFSETS, tp) or '-1')
    cursor[tp] = v
  end
  return v
end

local function seq_of(oid) return tonumber(string.sub(oid, 2)) end

-- An absorbed OneID keeps a pointer to its survivor forever.
local function resolve(oid)
  for _ = 1, 64 do
    local into = redis.call('HGET', P .. 'm:' .. oid, 'into')
    if not into then return oid end
    oid = into
  end
  return oid
end

local function num(v) return tonumber(v) or 0 end

local function merge(absorbed, survivor)
  local ma, ms = P .. 'm:' .. absorbed, P .. 'm:' .. survivor
  for _, k in ipairs(redis.call('SMEMBERS', P .. 'mi:' .. absorbed)) do
    redis.call('SET', P .. 'i:' .. k, survivor)
    redis.call('SADD', P .. 'mi:' .. survivor, k)
  end
  local a = redis.call('HMGET', ma, 'first', 'last', 'pts', 'ch', 'n')
  local s = redis.call('HMGET', ms, 'first', 'last', 'pts', 'ch', 'n')
  redis.call('HSET', ms,
    'first', math.min(num(a[1]), num(s[1])),
    'last', math.max(num(a[2]), num(s[2])),
    'pts', num(a[3]) + num(s[3]),
    'ch', bit.bor(num(a[4]), num(s[4])),
    'n', num(a[5]) + num(s[5]))
  redis.call('DEL', ma, P .. 'mi:' .. absorbed)
  redis.call('HSET', ma, 'into', survivor)
  redis.call('HINCRBY', STATS, 'members', -1)
  redis.call('HINCRBY', STATS, 'merges', 1)
end

-- Resolve the event's identity keys to one OneID, creating or merging as needed.
local function stitch(it)
  local found, list = {}, {}
  for _, k in ipairs(it.k) do
    local o = redis.call('GET', P .. 'i:' .. k)
    if o then
      o = resolve(o)
      if not found[o] then found[o] = true; list[#list + 1] = o end
    end
  end
  local oid, created = nil, 0
  if #list == 0 then
    oid = 'O' .. redis.call('INCR', P .. 'seq:oneid')
    redis.call('HSET', P .. 'm:' .. oid, 'first', it.t, 'last', it.t, 'pts', 0, 'ch', 0, 'n', 0)
    redis.call('HINCRBY', STATS, 'members', 1)
    created = 1
  else
    -- the survivor is the oldest OneID: the lowest sequence number
    table.sort(list, function(x, y) return seq_of(x) < seq_of(y) end)
    oid = list[1]
    for j = 2, #list do merge(list[j], oid) end
  end
  for _, k in ipairs(it.k) do
    redis.call('SET', P .. 'i:' .. k, oid)
    redis.call('SADD', P .. 'mi:' .. oid, k)
  end
  local m = P .. 'm:' .. oid
  local cur = redis.call('HMGET', m, 'first', 'last', 'ch')
  redis.call('HSET', m,
    'first', math.min(num(cur[1]), it.t),
    'last', math.max(num(cur[2]), it.t),
    'ch', bit.bor(num(cur[3]), bit.lshift(1, it.c)))
  redis.call('HINCRBY', m, 'n', 1)
  return oid, created
end

local function stock_key(sku, loc) return P .. 's:' .. sku .. '@' .. loc end

-- on hand never goes below zero; a sale of stock the views do not know of is counted
local function take(key, q)
  local on_hand = num(redis.call('HGET', key, 'on_hand'))
  local taken = math.min(on_hand, q)
  -- (never pass -0: Lua writes it as "-0", which HINCRBY refuses)
  if taken > 0 then redis.call('HINCRBY', key, 'on_hand', -taken) end
  if taken < q then redis.call('HINCRBY', STATS, 'stock_discrepancies', 1) end
end

local function apply_stock(it)
  local flags = ''
  local reserve = {}
  for _, op in ipairs(it.s) do
    local kind, sku, loc, q = op[1], op[2], op[3], op[4]
    local key = stock_key(sku, loc)
    if kind == 'sale' then
      take(key, q)
    elseif kind == 'receive' then
      redis.call('HINCRBY', key, 'on_hand', q)
    elseif kind == 'count' then
      redis.call('HSET', key, 'on_hand', q)
    elseif kind == 'transfer' then
      take(stock_key(sku, op[5]), q)
      redis.call('HINCRBY', key, 'on_hand', q)
    elseif kind == 'reserve' then
      reserve[#reserve + 1] = {key, q}
    end
  end
  if #reserve > 0 then
    -- all lines of an order are reserved, or none: available never goes negative
    local ok = true
    for _, r in ipairs(reserve) do
      local h = redis.call('HMGET', r[1], 'on_hand', 'reserved')
      if num(h[1]) - num(h[2]) < r[2] then ok = false end
    end
    if ok then
      for _, r in ipairs(reserve) do redis.call('HINCRBY', r[1], 'reserved', r[2]) end
      redis.call('HINCRBY', STATS, 'reservations', 1)
    else
      flags = flags .. 'B'
      redis.call('HINCRBY', STATS, 'backorders', 1)
    end
  end
  return flags
end

local function apply_event(it)
  local oid, created = '', 0
  if #it.k > 0 then oid, created = stitch(it) end
  if it.p ~= 0 and oid ~= '' then
    redis.call('HINCRBY', P .. 'm:' .. oid, 'pts', it.p)
    redis.call('HINCRBY', STATS, 'points_total', it.p)
  end
  local flags = apply_stock(it)
  redis.call('HINCRBY', STATS, 'facts', 1)
  redis.call('HINCRBY', STATS, 'type:' .. it.y, 1)
  return oid .. '|' .. created .. '|' .. flags
end

local results = {}
local advanced = {}
for i, it in ipairs(batch) do
  if it.o <= last_offset(it.tp) then
    if it.d then
      results[i] = {'replay_dead', ''}
    else
      results[i] = {'replay', redis.call('GET', P .. 'e:' .. it.id) or ''}
    end
  else
    cursor[it.tp] = it.o
    advanced[it.tp] = it.o
    if it.d then
      redis.call('HINCRBY', STATS, 'dead_lettered', 1)
      results[i] = {'dead', ''}
    else
      redis.call('HINCRBY', STATS, 'processed', 1)
      local prior = redis.call('GET', P .. 'e:' .. it.id)
      if prior then
        redis.call('HINCRBY', STATS, 'duplicates', 1)
        results[i] = {'duplicate', prior}
      else
        local res = apply_event(it)
        redis.call('SET', P .. 'e:' .. it.id, res, 'EX', ttl)
        results[i] = {'new', res}
      end
    end
  end
end
for tp, o in pairs(advanced) do redis.call('HSET', OFFSETS, tp, o) end
return results
