-- Applies one worker batch to the Redis views in a single atomic call.
-- Key layout (P = key prefix) is documented in docs/redis-keys.md.
--
-- ARGV[1] prefix, ARGV[2] event-id dedupe TTL (s), ARGV[3] JSON array of items, ARGV[4]
-- the identity policy, ARGV[5] campaign budgets. Items:
--   dead letter: {tp=, o=, d=1}
--   event:       {tp=, o=, id=, y=type, t=event ms, k={identity keys}, c=channel bit,
--                 p=points, s={{kind, sku, location, qty, from}}, r=order id,
--                 m=amount in cents (paid, refunded, face value), u=order status,
--                 g=campaign, b=1 if a purchase, L=candidate locations nearest first,
--                 h=the touch this event is (livestream:<room>, red_envelope:<c>, guide:<id>),
--                 H=1 for a pick-up order, a=its per-minute bucket "minute|channel|type|store",
--                 n=the OneID its fact has in ClickHouse (a rebuild only)}
-- ARGV[6] now (ms), ARGV[7] aggregate bucket TTL (s), ARGV[8] '1' from a rebuild's replay.
-- Returns one {status, result} per item, then {'aggregates', JSON list of the touched
-- buckets' {bucket, events, gmv, orders, claims, refunds}}. Item status, one of:
--   new        first time this event is applied; result = "oneid|new_member|flags|points[|log]"
--              (points: awarded; log: JSON list of the event's merges, refusals, unlinked
--              identifiers, points taken back or lapsed, attribution: objects with an
--              action; stock movements: arrays {'stock', sku, location, kind, d_on, d_res,
--              on, res, v, ref})
--   duplicate  event_id already applied from another offset (a re-sent event): no effect
--   replay     this very offset was applied before (redelivery): no effect, first result
--   dead       a dead letter counted;  replay_dead: counted before
local P = ARGV[1]
-- ARGV[8]: '1' when `omni rebuild` replays. While `rebuilding` exists, a rebuild has wiped
-- the views and not finished its replay (it failed, or runs): the workers' batches are
-- refused, not applied to half-built views (a member not replayed yet would come back as
-- a new OneID). The worker waits and retries (connectors/redis_views.py).
if ARGV[8] ~= '1' and redis.call('EXISTS', P .. 'rebuilding') == 1 then
  return redis.error_reply('REBUILDING the views are being rebuilt')
end
local ttl = tonumber(ARGV[2])
local batch = cjson.decode(ARGV[3])
-- ARGV[4]: the identity policy {limits = {{kind, n}}, review = {kinds}} (streams/core/rules.py)
-- limits is a list of {kind, n} in priority order, so a refusal names the same kind on
-- every run; LIMIT is the same as a map.
local POLICY = cjson.decode(ARGV[4])
local LIMIT = {}
for _, l in ipairs(POLICY.limits) do LIMIT[l[1]] = l[2] end
-- ARGV[5]: the points and stock rules of streams/core/rules.py: {budgets = {campaign =
-- {claims, cents}} (0: no limit), window_ms (attribution), tiers = {{floor, name, mult}}
-- highest first, campaign_mult = {campaign = mult}, overdraft, expiry_ms (0: never),
-- hold_ms (pick-up reservations)}
local CONFIG = cjson.decode(ARGV[5])
local BUDGET = CONFIG.budgets
local WINDOW = CONFIG.window_ms
-- ARGV[6]: now (ms, the worker's clock): pick-up holds older than this expire
local NOW = tonumber(ARGV[6])
-- ARGV[7]: how long (s) a per-minute aggregate bucket is kept (longer than the oldest
-- event accepted, so a late event adds to its minute's bucket instead of starting over)
local AGG_TTL = tonumber(ARGV[7] or '0')
local STATS = P .. 'stats'
local OFFSETS = P .. 'offsets'

-- The batch's changes to the counters in STATS, written once at its end (one HINCRBY a
-- counter instead of several an event; the script is atomic, so no one sees the difference).
local STAT = {}
local function stat(field, n) STAT[field] = (STAT[field] or 0) + n end
local function write_stats()
  for field, n in pairs(STAT) do redis.call('HINCRBY', STATS, field, n) end
end

local cursor = {}
local function last_offset(tp)
  local v = cursor[tp]
  if v == nil then
    v = tonumber(redis.call('HGET', OFFSETS, tp) or '-1')
    cursor[tp] = v
  end
  return v
end

-- OneIDs O<n> are numbered by seq:oneid, read once a batch and written back at its end
local SEQ, SEQ_READ = nil, nil
local function read_seq()
  if SEQ == nil then
    SEQ = tonumber(redis.call('GET', P .. 'seq:oneid') or '0')
    SEQ_READ = SEQ
  end
end
local function next_oneid()
  read_seq()
  SEQ = SEQ + 1
  return 'O' .. SEQ
end
local function write_seq()
  if SEQ ~= SEQ_READ then redis.call('SET', P .. 'seq:oneid', SEQ) end
end

local function seq_of(oid) return tonumber(string.sub(oid, 2)) end
local function older(x, y) if seq_of(x) < seq_of(y) then return x, y end return y, x end
local function kind_of(k) return string.match(k, '^([^:]+)') end

-- A rebuild (streams/rebuild.py) names the OneID ClickHouse holds the event's fact under
-- (it.n): a member the event creates takes it when no one in the views holds it, so the
-- rebuilt people keep the numbers their facts have. The workers never name one.
local function claim_oneid(hint)
  if hint == nil or not string.match(hint, '^O%d+$') or redis.call('EXISTS', P .. 'm:' .. hint) == 1
      or redis.call('HEXISTS', P .. 'erased', hint) == 1 then
    return next_oneid()
  end
  read_seq()
  -- the counter never falls behind a number in use
  if seq_of(hint) > SEQ then SEQ = seq_of(hint) end
  return hint
end

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
-- An integer as text, every digit kept: Lua writes numbers into strings, and cjson into
-- JSON, with 14 significant digits ("1.4999999999999e+14"); an HSET argument keeps 17.
-- Points and money sums the script returns go through it (exact up to 2^53).
local function int(x) return string.format('%d', x) end

-- floor(n * part / whole) exactly, for whole numbers 0 <= n, part <= whole < 2^53: the
-- product itself may pass 2^53, where a double would round it (a full refund of a
-- 9,490,857.45-yuan order would leave a point behind). Long multiplication by doubling,
-- every intermediate below whole (a sum of two could pass 2^53 and round).
local function share(n, part, whole)
  if part >= whole then return n end
  local r = math.fmod(n, whole)
  local base = (n - r) / whole * part
  -- n * part / whole = (n - r) / whole * part + r * part / whole; the second term as
  -- q whole parts and rem, built up bit by bit of part from the highest
  local q, rem, p = 0, 0, 1
  while p * 2 <= part do p = p * 2 end
  while p >= 1 do
    if rem >= whole - rem then q, rem = q * 2 + 1, rem - (whole - rem)
    else q, rem = q * 2, rem * 2 end
    if part >= p then
      part = part - p
      if rem >= whole - r then q, rem = q + 1, rem - (whole - r)
      else rem = rem + r end
    end
    p = p / 2
  end
  return base + q
end

-- The points ledger: every change of a balance is an entry with a unique reference
-- (event, rule). The full ledger goes to ClickHouse; Redis keeps the newest RECENT.
local RECENT = 5
local function ledger(oid, event_id, rule, delta)
  -- trimmed only once it holds more than RECENT (most members have fewer)
  if redis.call('LPUSH', P .. 'l:' .. oid, event_id .. ' ' .. rule .. ' ' .. int(delta)) > RECENT then
    redis.call('LTRIM', P .. 'l:' .. oid, 0, RECENT - 1)
  end
end

local function keys_of(oid) return redis.call('SMEMBERS', P .. 'mi:' .. oid) end

-- expiry (OMNI_POINTS_EXPIRY_DAYS): a balance whose last activity is older than
-- expiry_ms at the event's time has lapsed
local function dormant(act, t)
  return CONFIG.expiry_ms > 0 and act > 0 and t - act > CONFIG.expiry_ms
end

local function kind_counts(keys)
  local c = {}
  for _, k in ipairs(keys) do local kd = kind_of(k); c[kd] = (c[kd] or 0) + 1 end
  return c
end

-- The safety rules of a merge (docs/identity.md): two members who each hold their own
-- identifier of a review kind (card, phone) are never fused: flagged for review instead;
-- no kind may exceed its limit in the merged member.
local function merge_verdict(ka, kb)
  local ca, cb = kind_counts(ka), kind_counts(kb)
  for _, kd in ipairs(POLICY.review) do
    if (ca[kd] or 0) > 0 and (cb[kd] or 0) > 0 then return 'both_identified:' .. kd end
  end
  for _, l in ipairs(POLICY.limits) do
    if (ca[l[1]] or 0) + (cb[l[1]] or 0) > l[2] then return 'limit:' .. l[1] end
  end
  return nil
end

-- Returns the points the absorbed member brought, and those that lapsed in the merge.
local function merge(absorbed, survivor, kept, moved, t)
  local ma, ms = P .. 'm:' .. absorbed, P .. 'm:' .. survivor
  for _, k in ipairs(moved) do
    redis.call('SET', P .. 'i:' .. k, survivor)
    redis.call('SADD', P .. 'mi:' .. survivor, k)
  end
  local fields = {'first', 'last', 'pts', 'ch', 'n', 'earned', 'f', 'mon', 'rec', 'act'}
  local a = redis.call('HMGET', ma, unpack(fields))
  local s = redis.call('HMGET', ms, unpack(fields))
  -- the merged member takes the later activity of the two: a balance that has lapsed
  -- lapses here when the other member is active, instead of living on through it (both
  -- lapsed: the merged balance lapses in apply_event, as one member's would)
  local pa, ps, lapsed = num(a[3]), num(s[3]), 0
  local da, ds = dormant(num(a[10]), t), dormant(num(s[10]), t)
  if da and not ds and pa > 0 then lapsed, pa = pa, 0 end
  if ds and not da and ps > 0 then lapsed, ps = ps, 0 end
  local set = {
    'first', math.min(num(a[1]), num(s[1])),
    'last', math.max(num(a[2]), num(s[2])),
    'pts', pa + ps,
    'ch', bit.bor(num(a[4]), num(s[4])),
    'n', num(a[5]) + num(s[5]),
    'earned', num(a[6]) + num(s[6]),
    'f', num(a[7]) + num(s[7]),
    'mon', num(a[8]) + num(s[8]),
    'rec', math.max(num(a[9]), num(s[9])),
  }
  if num(a[10]) > num(s[10]) then set[#set + 1] = 'act'; set[#set + 1] = a[10] end
  redis.call('HSET', ms, unpack(set))
  -- the later of the two last touches stays the member's last touch
  local ta = redis.call('HMGET', ma, 'lt', 'lts')
  local ts = redis.call('HMGET', ms, 'lt', 'lts')
  if ta[1] and num(ta[2]) > num(ts[2]) then redis.call('HSET', ms, 'lt', ta[1], 'lts', ta[2]) end
  local recent = redis.call('LRANGE', P .. 'l:' .. absorbed, 0, -1)
  if #recent > 0 then
    redis.call('RPUSH', P .. 'l:' .. survivor, unpack(recent))
    redis.call('LTRIM', P .. 'l:' .. survivor, 0, RECENT - 1)
    redis.call('DEL', P .. 'l:' .. absorbed)
  end
  -- the survivor remembers every OneID it absorbed (erasure must find them)
  redis.call('SADD', P .. 'ma:' .. survivor, absorbed)
  if redis.call('EXISTS', P .. 'ma:' .. absorbed) == 1 then
    redis.call('SUNIONSTORE', P .. 'ma:' .. survivor, P .. 'ma:' .. survivor, P .. 'ma:' .. absorbed)
    redis.call('DEL', P .. 'ma:' .. absorbed)
  end
  redis.call('DEL', ma, P .. 'mi:' .. absorbed)
  redis.call('HSET', ma, 'into', survivor)
  stat('members', -1)
  stat('merges', 1)
  return pa, lapsed
end

local function flag_review(it, log)
  stat('refusals', 1)
  stat('refused:' .. string.match(log.reason, '^([^:]+)'), 1)
  if string.sub(log.reason, 1, 15) == 'both_identified' then
    redis.call('ZADD', P .. 'review', it.t, it.id)
  end
end

-- Resolve the event's identity keys (highest priority first) to one OneID, creating or
-- merging as the rules allow. Returns the OneID, 1 if it was created, and the identity
-- log of the event (merges, refusals, identifiers left unlinked).
-- An `i:` key always names a live member: a merge points every identifier of the
-- absorbed member at the survivor, and an erasure deletes the links of the member it
-- erases. So the identifiers are read in one MGET and need no resolving.
-- A member created here is written by apply_event's one write of its profile.
local function stitch(it)
  local owner, list, log = {}, {}, {}
  local names = {}
  for j, k in ipairs(it.k) do names[j] = P .. 'i:' .. k end
  local owners = redis.call('MGET', unpack(names))
  for j, k in ipairs(it.k) do
    local o = owners[j]
    if o then
      owner[k] = o
      local known = false
      for _, x in ipairs(list) do if x == o then known = true end end
      if not known then list[#list + 1] = o end
    end
  end
  local oid, created = nil, 0
  if #list == 0 then
    oid = claim_oneid(it.n)
    stat('members', 1)
    created = 1
  else
    -- the anchor: the member of the event's highest-priority known identifier
    oid = list[1]
    local lapsed = 0
    for j = 2, #list do
      local other = list[j]
      local ko, kx = keys_of(oid), keys_of(other)
      local why = merge_verdict(ko, kx)
      if why then
        local entry = {action = 'refused', one_id = oid, other = other, reason = why,
                       kept = ko, moved = kx}
        log[#log + 1] = entry
        flag_review(it, entry)
      else
        local survivor, absorbed = older(oid, other)
        local kept, moved = ko, kx
        if survivor ~= oid then kept, moved = kx, ko end
        local pts, gone = merge(absorbed, survivor, kept, moved, it.t)
        log[#log + 1] = {action = 'merge', one_id = survivor, other = absorbed, reason = '',
                         kept = kept, moved = moved, points = int(pts)}
        for k, o in pairs(owner) do if o == absorbed then owner[k] = survivor end end
        oid = survivor
        lapsed = lapsed + gone
      end
    end
    -- one entry for all that lapsed in the event's merges: (event, rule) is its reference
    if lapsed > 0 then
      stat('points_expired', lapsed)
      ledger(oid, it.id, 'expire:inactive', -lapsed)
      log[#log + 1] = {action = 'points', one_id = oid, other = it.id,
                       reason = 'expire:inactive', kept = {}, moved = {}, points = int(-lapsed)}
    end
  end
  local counts = nil
  if created == 1 then counts = {} end
  local linked = {}
  for _, k in ipairs(it.k) do
    if owner[k] == nil then
      local kd = kind_of(k)
      counts = counts or kind_counts(keys_of(oid))
      local limit = LIMIT[kd]
      if limit and (counts[kd] or 0) + 1 > limit then
        local entry = {action = 'not_linked', one_id = oid, other = '', reason = 'limit:' .. kd,
                       kept = {}, moved = {k}}
        log[#log + 1] = entry
        flag_review(it, entry)
      else
        linked[#linked + 1] = k
        counts[kd] = (counts[kd] or 0) + 1
      end
    end
  end
  if #linked > 0 then
    local links = {}
    for _, k in ipairs(linked) do links[#links + 1] = P .. 'i:' .. k; links[#links + 1] = oid end
    redis.call('MSET', unpack(links))
    redis.call('SADD', P .. 'mi:' .. oid, unpack(linked))
  end
  -- (the member's first/last touch, channels and event count: apply_event's one write)
  return oid, created, log
end

local SKEY = P .. 's:'
local function stock_key(sku, loc) return SKEY .. sku .. '@' .. loc end

-- Every change of a stock key is a movement: what changed, what the key holds after,
-- and the key's own version (ClickHouse keeps the highest version as the key's state).
-- The movements of the event being applied collect in MOVES and ride in its log.
local MOVES = {}
local function stock_of(key) return redis.call('HMGET', key, 'on_hand', 'reserved', 'v') end
-- h: what stock_of(key) gave, when the caller has read it already
local function move(key, kind, d_on, d_res, ref, h)
  if d_on == 0 and d_res == 0 then return end
  -- one read and one write; a field is written only when it changes
  h = h or stock_of(key)
  local on, res, v = num(h[1]) + d_on, num(h[2]) + d_res, num(h[3]) + 1
  local set = {'v', v}
  if d_on ~= 0 then set[#set + 1] = 'on_hand'; set[#set + 1] = on end
  if d_res ~= 0 then set[#set + 1] = 'reserved'; set[#set + 1] = res end
  redis.call('HSET', key, unpack(set))
  local sku, loc = string.match(string.sub(key, #SKEY + 1), '^(.*)@([^@]*)$')
  -- an array, not an object: every event's dedupe record (e:) holds its log, and the
  -- field names were most of a movement's bytes (connectors/redis_views.py _move)
  MOVES[#MOVES + 1] = {'stock', sku, loc, kind, d_on, d_res, on, res, v, ref or ''}
end

-- on hand never goes below zero; a sale of stock the views do not know of is counted
local function take(key, q, kind)
  local h = stock_of(key)
  local taken = math.min(num(h[1]), q)
  if taken > 0 then move(key, kind, -taken, 0, nil, h) end
  if taken < q then stat('stock_discrepancies', 1) end
end

local function apply_stock(it)
  local flags = ''
  local reserve = {}
  for _, op in ipairs(it.s) do
    local kind, sku, loc, q = op[1], op[2], op[3], op[4]
    local key = stock_key(sku, loc)
    if kind == 'sale' then
      take(key, q, 'sale')
    elseif kind == 'receive' then
      move(key, 'receive', q, 0)
    elseif kind == 'count' then
      local h = stock_of(key)
      move(key, 'count', q - num(h[1]), 0, nil, h)
    elseif kind == 'transfer' then
      take(stock_key(sku, op[5]), q, 'transfer_out')
      move(key, 'transfer_in', q, 0)
    elseif kind == 'reserve' then
      reserve[#reserve + 1] = {sku, loc, q}
    end
  end
  local held = {}
  if #reserve > 0 then
    -- All lines of an order are reserved at one location, or none: available never goes
    -- negative. (Each SKU once: streams/core/plan.py sums an order's lines of one SKU.) A delivery order names candidate locations nearest first (it.L): the
    -- first that can serve every line gets it.
    local places = it.L
    if places == nil or #places == 0 then places = {reserve[1][2]} end
    local chosen = nil
    for _, place in ipairs(places) do
      local ok = true
      for _, r in ipairs(reserve) do
        local h = redis.call('HMGET', stock_key(r[1], place), 'on_hand', 'reserved')
        if num(h[1]) - num(h[2]) < r[3] then ok = false; break end
      end
      if ok then chosen = place; break end
    end
    if chosen then
      for _, r in ipairs(reserve) do
        local key = stock_key(r[1], chosen)
        move(key, 'reserve', 0, r[3])
        held[#held + 1] = {key, r[3]}
      end
      stat('reservations', 1)
      if chosen ~= places[1] then stat('reserved_further', 1) end
    else
      flags = flags .. 'B'
      stat('backorders', 1)
    end
  end
  return flags, held
end

-- Orders (docs/redis-keys.md `o:`): what an order holds, so its later statuses can
-- undo or complete it. A status that arrives before its order (another topic, another
-- partition) waits in `op:<order>` and is applied when the order arrives.
local function apply_status(order_id, status, refund_cents, event_id, at, log)
  local o = P .. 'o:' .. order_id
  local h = redis.call('HMGET', o, 'oid', 'pts', 'paid', 'state', 'rev', 'lines', 'refunded',
    'at')
  local oid, pts, paid, state, rev = h[1], num(h[2]), num(h[3]), h[4], num(h[5])
  local lines = cjson.decode(h[6] or '[]')
  local function reverse(amount)
    amount = math.min(amount, pts - rev)
    if amount <= 0 then return end
    local live = resolve(oid)
    local m = P .. 'm:' .. live
    if redis.call('EXISTS', m) == 1 then
      -- a balance goes no lower than minus the overdraft allowed (0 by default): what
      -- cannot be taken back is counted
      local take = math.max(0, math.min(amount, num(redis.call('HGET', m, 'pts')) + CONFIG.overdraft))
      if take > 0 then
        redis.call('HINCRBY', m, 'pts', -take)
        local rule = 'reverse:' .. status
        ledger(live, event_id, rule, -take)
        log[#log + 1] = {action = 'points', one_id = live, other = event_id, reason = rule,
                         kept = {}, moved = {}, points = int(-take)}
      end
      if take < amount then stat('points_unrecovered', amount - take) end
    end
    rev = rev + amount
    redis.call('HSET', o, 'rev', rev)
    stat('points_reversed', amount)
  end
  -- (a pick-up hold ends only with its reservation: a paid or refunded status leaves it
  -- to lapse)
  if status == 'cancelled' then
    if state == 'cancelled' or state == 'fulfilled' then return end
    redis.call('ZREM', P .. 'holds', order_id)
    if state == 'reserved' then
      for _, l in ipairs(lines) do move(l[1], 'release', 0, -l[2]) end
      stat('reservations_released', 1)
    end
    reverse(pts)
    redis.call('HSET', o, 'state', 'cancelled')
    stat('orders_cancelled', 1)
  elseif status == 'picked_up' or status == 'shipped' then
    if state == 'cancelled' or state == 'fulfilled' then return end
    redis.call('ZREM', P .. 'holds', order_id)
    if state == 'reserved' then
      -- the reservation becomes the sale; on hand goes no lower than zero (a checkout or
      -- a count may have taken what was held): what is missing is counted, as in take()
      for _, l in ipairs(lines) do
        local h = stock_of(l[1])
        local taken = math.min(num(h[1]), l[2])
        move(l[1], 'fulfil', -taken, -l[2], nil, h)
        if taken < l[2] then stat('stock_discrepancies', 1) end
      end
    elseif state == 'expired' then
      -- collected after its hold lapsed: a plain sale from the shelf
      for _, l in ipairs(lines) do take(l[1], l[2], 'sale') end
    elseif state == 'backordered' then
      -- it held nothing: what it asked for ([sku, qty]) leaves the shelf it went from,
      -- the status's store, else a pick-up order's own; neither known: counted
      local place = at
      if place == '' then place = h[8] or '' end
      if place == '' then
        stat('backorders_unplaced', 1)
      else
        for _, l in ipairs(lines) do take(stock_key(l[1], place), l[2], 'sale') end
      end
    end
    redis.call('HSET', o, 'state', 'fulfilled')
    stat('orders_fulfilled', 1)
  elseif status == 'refunded' then
    -- points back in proportion to all refunded so far (floor), less what is back
    -- already: a full refund made in parts takes every point back
    local refunded = math.min(paid, num(h[7]) + refund_cents)
    redis.call('HSET', o, 'refunded', refunded)
    if paid > 0 then reverse(share(pts, refunded, paid) - rev) end
    stat('orders_refunded', 1)
  end
end

-- Pick-up reservations whose hold has lapsed by NOW go back on the shelf.
local function expire_holds()
  local due = redis.call('ZRANGEBYSCORE', P .. 'holds', '-inf', NOW, 'LIMIT', 0, 500)
  for _, order_id in ipairs(due) do
    local o = P .. 'o:' .. order_id
    local h = redis.call('HMGET', o, 'state', 'lines')
    if h[1] == 'reserved' then
      for _, l in ipairs(cjson.decode(h[2] or '[]')) do
        move(l[1], 'expire', 0, -l[2], 'hold:' .. order_id)
      end
      redis.call('HSET', o, 'state', 'expired')
      stat('holds_expired', 1)
    end
    redis.call('ZREM', P .. 'holds', order_id)
  end
end

local function apply_order(it, oid, reserved, flags, log)
  if it.y == 'app_order' then
    local o = P .. 'o:' .. it.r
    local lines = {}
    for _, r in ipairs(reserved) do lines[#lines + 1] = {r[1], r[2]} end
    local state, at = 'reserved', nil
    if string.find(flags, 'B', 1, true) then
      -- held nothing: what it asks for is kept, to leave the shelf when it ships, and a
      -- pick-up order's store
      state = 'backordered'
      for _, op in ipairs(it.s) do
        if op[1] == 'reserve' then lines[#lines + 1] = {op[2], op[4]} end
      end
      if it.H == 1 and #it.s > 0 then at = it.s[1][3] end
    end
    local set = {'oid', oid, 'pts', it.p, 'paid', it.m, 'state', state, 'rev', 0,
      'lines', cjson.encode(lines)}
    if at then set[#set + 1] = 'at'; set[#set + 1] = at end
    redis.call('HSET', o, unpack(set))
    -- a pick-up reservation is held for hold_ms, then released (expire_holds)
    if it.H == 1 and state == 'reserved' then
      redis.call('ZADD', P .. 'holds', it.t + CONFIG.hold_ms, it.r)
    end
    stat('orders', 1)
    local waiting = redis.call('LRANGE', P .. 'op:' .. it.r, 0, -1)
    for _, w in ipairs(waiting) do
      local st = cjson.decode(w)
      apply_status(it.r, st[1], st[2], st[3], st[4] or '', log)
    end
    if #waiting > 0 then redis.call('DEL', P .. 'op:' .. it.r) end
  elseif it.y == 'order_status' then
    if redis.call('EXISTS', P .. 'o:' .. it.r) == 1 then
      apply_status(it.r, it.u, it.m, it.id, it.S, log)
    else
      redis.call('RPUSH', P .. 'op:' .. it.r, cjson.encode({it.u, it.m, it.id, it.S}))
      stat('statuses_early', 1)
    end
  end
end

-- A claim within its campaign's budget is awarded and counted against it; past either
-- limit it is refused: recorded, not awarded.
local function claim_awarded(it)
  local c = P .. 'c:' .. it.g
  local b = BUDGET[it.g]
  if b then
    local h = redis.call('HMGET', c, 'claims', 'cents')
    if (b[1] > 0 and num(h[1]) + 1 > b[1]) or (b[2] > 0 and num(h[2]) + it.m > b[2]) then
      redis.call('HINCRBY', c, 'refused', 1)
      stat('claims_refused', 1)
      return false
    end
  end
  redis.call('HINCRBY', c, 'claims', 1)
  redis.call('HINCRBY', c, 'cents', it.m)
  return true
end

-- Per-minute aggregates (docs/clickhouse.md): one hash per minute x channel x touchpoint
-- type x store (it.a), counted here, atomically with the event's own dedupe record, so
-- an event counts once however often it is delivered. The batch returns the absolute
-- values of every bucket it touched; events is the bucket's version.
-- A batch's counts collect in COUNTS and are written once a bucket at its end.
local TOUCHED = {}
local COUNTS = {}
local function count_minute(it, awarded)
  if it.a == nil or it.a == '' then return end
  local c = COUNTS[it.a]
  if c == nil then
    c = {events = 0}
    COUNTS[it.a] = c
  end
  c.events = c.events + 1
  if it.b == 1 then
    c.orders = (c.orders or 0) + 1
    c.gmv = (c.gmv or 0) + it.m
  end
  if it.y == 'red_envelope_claim' and awarded then c.claims = (c.claims or 0) + 1 end
  if it.u == 'refunded' then c.refunds = (c.refunds or 0) + it.m end
  TOUCHED[it.a] = true
end

local BUCKET_FIELDS = {'events', 'gmv', 'orders', 'claims', 'refunds'}
local function read_bucket(b) return redis.call('HMGET', P .. 'a:' .. b, unpack(BUCKET_FIELDS)) end
-- a bucket's snapshot {bucket, events, gmv, orders, claims, refunds}: what HMGET gave (h),
-- plus the batch's counts (c)
local function bucket_row(b, h, c)
  local row = {b}
  for j, field in ipairs(BUCKET_FIELDS) do row[j + 1] = num(h[j]) + (c[field] or 0) end
  return row
end

-- one read and one write a bucket; what it holds afterwards is its snapshot
local SNAPSHOT = {}
local function write_minutes()
  for b, c in pairs(COUNTS) do
    local key = P .. 'a:' .. b
    local row, set = bucket_row(b, read_bucket(b), c), {}
    for j, field in ipairs(BUCKET_FIELDS) do
      if c[field] then set[#set + 1] = field; set[#set + 1] = row[j + 1] end
    end
    redis.call('HSET', key, unpack(set))
    if AGG_TTL > 0 then redis.call('EXPIRE', key, AGG_TTL) end
    SNAPSHOT[b] = row
  end
end

local function minute_snapshots()
  local rows = {}
  for b, _ in pairs(TOUCHED) do
    local row = SNAPSHOT[b]
    if row == nil then
      local h = read_bucket(b)
      if h[1] then row = bucket_row(b, h, {}) end
    end
    if row then
      -- (gmv and refunds are cents: two of the largest orders make 15 digits)
      for j = 2, #row do row[j] = int(row[j]) end
      rows[#rows + 1] = row
    end
  end
  return rows
end

local function apply_event(it)
  -- optional fields of an item (connectors/redis_views.py event_item writes them all)
  it.h, it.g, it.u, it.r, it.S = it.h or '', it.g or '', it.u or '', it.r or '', it.S or ''
  it.m, it.b, it.H, it.p = it.m or 0, it.b or 0, it.H or 0, it.p or 0
  local oid, created, log = '', 0, {}
  MOVES = {}
  if #it.k > 0 then oid, created, log = stitch(it) end
  local refused = ''
  if it.y == 'red_envelope_claim' and not claim_awarded(it) then
    it.p = 0
    refused = 'X'
  end
  -- an app order whose order id is known already (sent again under a new event id) is
  -- recorded, not applied again: no second reservation, points, purchase or touch
  local repeated = it.y == 'app_order' and redis.call('EXISTS', P .. 'o:' .. it.r) == 1
  if repeated then
    it.p, it.b, it.h, it.s = 0, 0, '', {}
    refused = 'R'
    stat('orders_repeated', 1)
  end
  if oid ~= '' then
    -- The member's profile: one read and one write of its hash, whatever the event does
    -- to it; a field is written under the same conditions as it changes.
    local m = P .. 'm:' .. oid
    -- (a member stitch has just created has only its first and last touch: the rest of
    -- what HMGET would give is nil)
    local h = {it.t, it.t}
    if created == 0 then
      h = redis.call('HMGET', m, 'first', 'last', 'ch', 'n', 'act', 'pts', 'lt', 'lts',
        'earned', 'f', 'mon', 'rec')
    end
    local act, pts, lts, earned = num(h[5]), num(h[6]), num(h[8]), num(h[9])
    local set = {
      'first', math.min(num(h[1]), it.t),
      'last', math.max(num(h[2]), it.t),
      'ch', bit.bor(num(h[3]), bit.lshift(1, it.c)),
      'n', num(h[4]) + 1,
    }
    local function put(field, value) set[#set + 1] = field; set[#set + 1] = value end
    -- expiry: a balance left untouched for expiry_ms (event time) lapses
    local pts_changed = false
    if dormant(act, it.t) then
      local lapsed = pts
      if lapsed > 0 then
        pts, pts_changed = 0, true
        stat('points_expired', lapsed)
        ledger(oid, it.id, 'expire:inactive', -lapsed)
        log[#log + 1] = {action = 'points', one_id = oid, other = it.id,
                         reason = 'expire:inactive', kept = {}, moved = {}, points = int(-lapsed)}
      end
    end
    if it.t > act then put('act', it.t) end
    -- attribution: an app order goes to the member's last touch within the window
    local touch = ''
    if it.y == 'app_order' and not repeated then
      if h[7] and it.t >= lts and it.t - lts <= WINDOW then
        touch = h[7]
        log[#log + 1] = {action = 'attributed', one_id = oid, other = '', reason = touch,
                         kept = {}, moved = {}, points = 0}
        stat('orders_attributed', 1)
      end
    end
    -- (a claim refused past its budget is recorded, not a touch: it would lend its
    -- campaign's multiplier to the member's next order)
    if it.h ~= '' and it.t >= lts and refused == '' then
      put('lt', it.h)
      put('lts', it.t)
    end
    -- earning: the plan's base points times the member's tier multiplier, times the
    -- campaign's when the order came from a red envelope
    if it.p > 0 then
      local mult = 1
      for _, t in ipairs(CONFIG.tiers) do
        if earned >= t[1] then mult = t[3]; break end
      end
      local campaign = string.match(touch, '^red_envelope:(.+)$')
      if campaign and CONFIG.campaign_mult[campaign] then
        mult = mult * CONFIG.campaign_mult[campaign]
      end
      it.p = math.floor(it.p * mult + 1e-6)
    end
    if it.p ~= 0 then
      pts, pts_changed = pts + it.p, true
      if it.p > 0 then put('earned', earned + it.p) end
      stat('points_total', it.p)
      ledger(oid, it.id, 'earn:' .. it.y, it.p)
    end
    if pts_changed or created == 1 then put('pts', pts) end
    -- RFM: a purchase counts for frequency, monetary (cents) and recency
    if it.b == 1 then
      put('f', num(h[10]) + 1)
      put('mon', num(h[11]) + it.m)
      if it.t > num(h[12]) then put('rec', it.t) end
    end
    redis.call('HSET', m, unpack(set))
  else
    it.p = 0
  end
  local flags, reserved = apply_stock(it)
  flags = flags .. refused
  if not repeated then apply_order(it, oid, reserved, flags, log) end
  for _, mv in ipairs(MOVES) do log[#log + 1] = mv end
  count_minute(it, refused == '')
  stat('facts', 1)
  stat('type:' .. it.y, 1)
  local res = oid .. '|' .. created .. '|' .. flags .. '|' .. int(it.p)
  -- the log rides along, so a redelivered event re-emits it too
  if #log > 0 then res = res .. '|' .. cjson.encode(log) end
  return res
end

-- Movements that belong to no event (pick-up holds lapsing) ride in the log of the
-- batch's first new event; with none, they wait in `xm` for a later batch.
MOVES = {}
expire_holds()
local carried = MOVES
for _, w in ipairs(redis.call('LRANGE', P .. 'xm', 0, -1)) do
  for _, mv in ipairs(cjson.decode(w)) do carried[#carried + 1] = mv end
end
redis.call('DEL', P .. 'xm')

local results = {}
local advanced = {}
for i, it in ipairs(batch) do
  if it.o <= last_offset(it.tp) then
    if it.d then
      results[i] = {'replay_dead', ''}
    else
      local prior = redis.call('GET', P .. 'e:' .. it.id) or ''
      -- a result naming a member erased since (omni forget: no m: left) re-emits nothing
      local oid = string.match(prior, '^([^|]+)|')
      if oid and redis.call('EXISTS', P .. 'm:' .. oid) == 0 then prior = '' end
      results[i] = {'replay', prior}
      if it.a and it.a ~= '' and redis.call('EXISTS', P .. 'a:' .. it.a) == 1 then
        TOUCHED[it.a] = true
      end
    end
  else
    cursor[it.tp] = it.o
    advanced[it.tp] = it.o
    if it.d then
      stat('dead_lettered', 1)
      results[i] = {'dead', ''}
    else
      stat('processed', 1)
      local prior = redis.call('GET', P .. 'e:' .. it.id)
      if prior then
        stat('duplicates', 1)
        results[i] = {'duplicate', prior}
      else
        local res = apply_event(it)
        if #carried > 0 then
          local o, c, f, pts, logged = string.match(res, '^([^|]*)|([^|]*)|([^|]*)|([^|]*)|?(.*)$')
          local entries = {}
          if logged ~= '' then entries = cjson.decode(logged) end
          for _, mv in ipairs(carried) do entries[#entries + 1] = mv end
          res = o .. '|' .. c .. '|' .. f .. '|' .. pts .. '|' .. cjson.encode(entries)
          carried = {}
        end
        redis.call('SET', P .. 'e:' .. it.id, res, 'EX', ttl)
        results[i] = {'new', res}
      end
    end
  end
end
for tp, o in pairs(advanced) do redis.call('HSET', OFFSETS, tp, o) end
if #carried > 0 then redis.call('RPUSH', P .. 'xm', cjson.encode(carried)) end
write_seq()
write_stats()
write_minutes()
results[#batch + 1] = {'aggregates', cjson.encode(minute_snapshots())}
return results
