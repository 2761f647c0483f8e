-- Erases one live member (the right to be forgotten), atomically.
-- ARGV[1] prefix, ARGV[2] the live OneID, ARGV[3] erasure time (ms).
-- Deletes its identity links, profile, points and every OneID it absorbed; keeps an
-- erasure record without personal data under `erased` (so the ClickHouse part can be
-- completed later from the OneID alone). Returns that record as JSON, and the identity
-- keys the person held (JSON).
local P, oid, at = ARGV[1], ARGV[2], ARGV[3]
local STATS = P .. 'stats'
local keys = redis.call('SMEMBERS', P .. 'mi:' .. oid)
local absorbed = redis.call('SMEMBERS', P .. 'ma:' .. oid)
for _, k in ipairs(keys) do
  -- only links that still point here (never another member's)
  if redis.call('GET', P .. 'i:' .. k) == oid then redis.call('DEL', P .. 'i:' .. k) end
end
local pts = tonumber(redis.call('HGET', P .. 'm:' .. oid, 'pts') or '0')
for _, a in ipairs(absorbed) do redis.call('DEL', P .. 'm:' .. a) end
redis.call('DEL', P .. 'm:' .. oid, P .. 'mi:' .. oid, P .. 'ma:' .. oid, P .. 'l:' .. oid)
redis.call('HINCRBY', STATS, 'members', -1)
redis.call('HINCRBY', STATS, 'erasures', 1)
local record = cjson.encode({one_id = oid, absorbed = absorbed, identifiers = #keys,
                             points = pts, at = tonumber(at)})
redis.call('HSET', P .. 'erased', oid, record)
-- the person's identity keys go back to the caller only, never into the record: other
-- members' stored results and ClickHouse's merge log may name them (a refused merge, an
-- identifier not linked), and are scrubbed of them next
return {record, cjson.encode(keys)}
