// The Lua scripts of the Redis engine (see redisStore.ts for the layout). Generic and small: they
// hold, settle and move counters whose limits the TypeScript side (the key book, policy/admit.ts)
// computed and passes in; they decide nothing about prices, periods or policy. Each script
// touches the keys of ONE hash tag (one account `{a:<id>}`, one group budget `{gb:<name>}` or
// the global `{g}`) — except the optional feed/pointer keys, passed only on a single Redis.
//
// Numbers are written with string.format("%d") (exact to 2^53), never tostring (%.14g).

/** Shared helpers: an account's lazy sweep of expired reservations, an op list, a number formatter. */
const COMMON = `
local function n(x) return tonumber(x) or 0 end
local function d(x) return string.format('%d', x) end
-- Releases one reservation; true when it was open.
local function drop(h, rsv, rd, rid)
  local v = redis.call('HGET', rd, rid)
  if not v then return false end
  local k, u = string.match(v, '^(.*)|(%-?%d+)$')
  u = n(u)
  if redis.call('HEXISTS', h, 'k:'..k) == 1 then
    -- The three counters in one read and one write (what three HINCRBYs would leave).
    local c = redis.call('HMGET', h, 'h:'..k, 'o:'..k, 'held')
    redis.call('HSET', h, 'h:'..k, d(n(c[1]) - u), 'o:'..k, d(n(c[2]) - 1), 'held', d(n(c[3]) - u))
  else
    redis.call('HINCRBY', h, 'held', -u)
  end
  redis.call('HDEL', rd, rid)
  redis.call('ZREM', rsv, rid)
  return true
end
-- Per account (its rsv key), the time up to which this call already swept everything: a later
-- item of a batch with no later time finds nothing more (a hold added since with an expiry at or
-- before it clears the mark: see reserve).
local swept = {}
-- Releases the reservations of the account whose expiry (score) is <= now (at most 200 a call).
local function sweep(h, rsv, rd, now)
  local done = swept[rsv]
  if done and now <= done then return 0 end
  local exp = redis.call('ZRANGEBYSCORE', rsv, '-inf', now, 'LIMIT', 0, 200)
  for _, rid in ipairs(exp) do
    if not drop(h, rsv, rd, rid) then redis.call('ZREM', rsv, rid) end
  end
  if #exp < 200 then swept[rsv] = now else swept[rsv] = nil end
  return #exp
end
-- A key's counters, compact: remaining used credited lastUsedAt refilledAt ('' = null); the
-- scripts that report them append the account's sequence ("… seq").
local function kc(h, k)
  local v = redis.call('HMGET', h, 'r:'..k, 'u:'..k, 'c:'..k, 'l:'..k, 'f:'..k)
  return (v[1] or '0')..' '..(v[2] or '0')..' '..(v[3] or '0')..' '..(v[4] or '')..' '..(v[5] or '')
end
local function ac(h)
  local v = redis.call('HMGET', h, 'cr', 'ch')
  return (v[1] or '0')..' '..(v[2] or '0')
end
-- Runs an op list (JSON, every argument a string; indexes are into KEYS).
local function runops(ops)
  for _, o in ipairs(ops) do
    local op = o[1]
    if op == 'DROPKEY' then
      -- Releases every open reservation of key o[5] (KEYS o[2] = h, o[3] = rsv, o[4] = rd).
      local h, rsv, rd, k = KEYS[tonumber(o[2])], KEYS[tonumber(o[3])], KEYS[tonumber(o[4])], o[5]
      local all = redis.call('HGETALL', rd)
      for i = 1, #all, 2 do
        if string.sub(all[i+1], 1, #k + 1) == k..'|' then drop(h, rsv, rd, all[i]) end
      end
    elseif op == 'QSET' then
      -- remaining := o[4], crediting the difference (an admin quota set).
      local h, k = KEYS[tonumber(o[2])], o[3]
      local r = n(redis.call('HGET', h, 'r:'..k))
      redis.call('HINCRBY', h, 'c:'..k, n(o[4]) - r)
      redis.call('HSET', h, 'r:'..k, o[4])
    else
      local args = {op, KEYS[tonumber(o[2])]}
      for i = 3, #o do args[#args + 1] = o[i] end
      redis.call(unpack(args))
    end
  end
end
`;

/**
 * Compare-and-set batch. ARGV[1] = JSON { c: checks, o: ops, kc?: [[hIndex, keyId]...], ac?: [hIndex],
 * f?: [feedIndex, maxlen, sid, changesJson, versionsJson, accountId ('' none: else its counters go too)] }. A check is [keyIndex, field, 0] (absent),
 * [keyIndex, field, 1, value] (equals) or [keyIndex, field, 2] (present). Returns {0} on a failed check
 * (nothing written); else {1, keyCounters..., accountCounters?, feedId?}.
 */
export const CAS = `${COMMON}
local a = cjson.decode(ARGV[1])
for i, c in ipairs(a.c or {}) do
  local v = redis.call('HGET', KEYS[tonumber(c[1])], c[2])
  if c[3] == 0 and v then return {0, i} end
  if c[3] == 1 and v ~= c[4] then return {0, i} end
  if c[3] == 2 and not v then return {0, i} end
end
runops(a.o or {})
-- The counters returned (and published) carry their account's sequence, bumped once per account
-- hash this commit reports on (book/applyChange.ts applies none older than what it holds).
local seqs = {}
local function seq(h)
  local s = seqs[h]
  if not s then
    s = redis.call('EXISTS', h) == 1 and d(redis.call('HINCRBY', h, 'sq', 1)) or ''
    seqs[h] = s
  end
  return s
end
local out = {1}
local kcs = {}
for _, e in ipairs(a.kc or {}) do
  local h = KEYS[tonumber(e[1])]
  kcs[#kcs + 1] = e[2]..' '..kc(h, e[2])..' '..seq(h)
end
out[2] = table.concat(kcs, '\\n')
out[3] = a.ac and (ac(KEYS[tonumber(a.ac[1])])..' '..seq(KEYS[tonumber(a.ac[1])])) or ''
if a.f then
  if a.f[6] and a.f[6] ~= '' then
    out[4] = redis.call('XADD', KEYS[tonumber(a.f[1])], 'MAXLEN', '~', a.f[2], '*', 's', a.f[3], 'c', a.f[4], 'v', a.f[5], 'kc', out[2], 'a', a.f[6], 'ac', out[3])
  else
    out[4] = redis.call('XADD', KEYS[tonumber(a.f[1])], 'MAXLEN', '~', a.f[2], '*', 's', a.f[3], 'c', a.f[4], 'v', a.f[5], 'kc', out[2])
  end
end
return out
`;

/**
 * The Check and Consume steps as local functions (each rule once), run by BATCH: the items of
 * one event-loop turn, in order, in one call (a turn with one item is a batch of one).
 *
 * reserve(h, rsv, rd, rw, now, ttl, rid, keyId, version, units, unlimited, concurrency, rpm, tpm):
 * sweeps the account's expired reservations, re-checks the key's version and state (disabled /
 * expired / deleted → KEY_INVALID), then every counter given: account balance − held ≥ units, key
 * remaining − held ≥ units (unless unlimited), open < concurrency, requests / tokens in the last
 * minute < rpm / tpm; holds on all of them and records the reservation with its expiry. Returns
 * {ok (1 held, 0 refused, -1 key invalid), remaining, used, credited, keyHeld, open,
 * accountCredited, accountCharged, accountHeld, requests, tokens, resetMs, seq} — seq is the
 * account's counter sequence the figures were read at (a reserve moves none of them).
 *
 * consume(h, rsv, rd, rw, idem, led, rq|false, feed|false, gob|false, now, keyId, reservationId, units,
 * tokens, unlimited, deleted, windowMs, recordJson, sid, feedMaxlen, account, refillTotal|'', archived, owed):
 * exactly once per request id. A replay returns {2, json, keyRemaining, accountBalance, settled}.
 * A live key the engine no longer holds (deleted meanwhile) returns {3}. A charge that would take
 * a counter past 2^53 − 1 returns {4, used, remaining, charged, credited} and changes nothing (the
 * TypeScript side names the counter: store/book/charge.ts). Otherwise settles the reservation,
 * charges the key (remaining, used, lastUsedAt, the rate window's tokens) and the account, bumps
 * the account's sequence, appends the ledger entry and writes the idempotency record (both expire
 * with the window), with gob adds `owed` (the group budget's charge, groupCharge.ts) to the
 * account's outbox scored by `now`, publishes the absolute counters (with the sequence), and returns {1, json,
 * keyRemaining, accountBalance, settled, keyCounters, accountCounters}.
 */
const STEPS = `
local M = 9007199254740991
local function reserve(h, rsv, rd, rw, snow, ttl, rid, k, ver, sunits, unl, sconc, srpm, stpm)
  local now, units = n(snow), n(sunits)
  sweep(h, rsv, rd, now)
  local v = redis.call('HMGET', h, 'v:'..k, 'x:'..k, 'r:'..k, 'u:'..k, 'c:'..k, 'h:'..k, 'o:'..k, 'cr', 'ch', 'held', 'sq')
  if v[1] ~= ver then return {-1} end
  local x = n(v[2])
  if x == -1 or (x > 0 and x <= now) then return {-1} end
  local rem, used, cred, kh, open, cr, ch, held = n(v[3]), n(v[4]), n(v[5]), n(v[6]), n(v[7]), n(v[8]), n(v[9]), n(v[10])
  local conc, rpm, tpm = n(sconc), n(srpm), n(stpm)
  local reqs, toks, reset = 0, 0, 0
  local sec = math.floor(now / 1000)
  if rpm > 0 or tpm > 0 then
    local w = redis.call('HGETALL', rw)
    local oldest = nil
    for i = 1, #w, 2 do
      local s = n(string.sub(w[i], 2))
      if s <= sec - 60 then redis.call('HDEL', rw, w[i])
      elseif s <= sec then
        local c = n(w[i+1])
        if string.sub(w[i], 1, 1) == 'r' then reqs = reqs + c else toks = toks + c end
        if c > 0 and (oldest == nil or s < oldest) then oldest = s end
      end
    end
    if oldest then reset = math.max(0, (oldest + 60) * 1000 - now) end
  end
  local qa, aa = rem - kh, cr - ch - held
  local ok = aa > 0 and aa >= units and (unl == '1' or (qa > 0 and qa >= units))
    and (conc == 0 or open < conc) and (rpm == 0 or reqs < rpm) and (tpm == 0 or toks < tpm)
  if ok then
    kh, open, held = kh + units, open + 1, held + units
    -- The holds and lastUsedAt in one write (the values were read above, in this same script).
    redis.call('HSET', h, 'h:'..k, d(kh), 'o:'..k, d(open), 'held', d(held), 'l:'..k, snow)
    local e = now + n(ttl)
    redis.call('ZADD', rsv, e, rid)
    if swept[rsv] and e <= swept[rsv] then swept[rsv] = nil end
    redis.call('HSET', rd, rid, k..'|'..sunits)
    if rpm > 0 or tpm > 0 then
      redis.call('HINCRBY', rw, 'r'..d(sec), 1)
      redis.call('PEXPIRE', rw, 120000)
    end
  end
  return {ok and 1 or 0, d(rem), d(used), d(cred), d(kh), d(open), d(cr), d(ch), d(held), d(reqs), d(toks), d(reset), v[11] or '0'}
end
-- |x| <= 2^53 - 1. Each sum below is one rounding of exact integers, so the comparison is exact.
local function safe(x) return x <= M and x >= -M end
local function consume(h, rsv, rd, rw, idem, led, rq, feed, gob, snow, k, rid, sunits, stoks, unl, del, swin, json, sid, maxlen, account, total, archived, owed)
  local now, units = n(snow), n(sunits)
  -- The idempotency record is the id of the request's ledger entry (the entry holds the record).
  local prior = redis.call('GET', idem)
  if prior then
    local e = redis.call('XRANGE', led, prior, prior)
    if e[1] then local f = e[1][2]; return {2, f[2], f[4], f[6], f[8]} end
  end
  local deleted = del == '1'
  if not deleted and redis.call('HEXISTS', h, 'k:'..k) == 0 then return {3} end
  -- The 2^53 guard (the same rule as the embedded engine's, store/book/charge.ts).
  local a = redis.call('HMGET', h, 'cr', 'ch', 'u:'..k, 'r:'..k)
  local cr, ch, used, rem = n(a[1]), n(a[2]), n(a[3]), n(a[4])
  local ok = safe(ch + units) and safe(cr - (ch + units))
  if ok and not deleted then
    ok = safe(used + units) and safe(rem - units) and (total == '' or safe(used + units + n(total)))
  end
  if not ok then return {4, d(used), d(rem), d(ch), d(cr)} end
  sweep(h, rsv, rd, now)
  local settled = ''
  if rid ~= '' and drop(h, rsv, rd, rid) then settled = rid end
  local kr = 0
  if not deleted then
    if unl ~= '1' then redis.call('HINCRBY', h, 'r:'..k, -units) end
    redis.call('HINCRBY', h, 'u:'..k, units)
    redis.call('HSET', h, 'l:'..k, snow)
    if redis.call('EXISTS', rw) == 1 then
      redis.call('HINCRBY', rw, 't'..d(math.floor(now / 1000)), n(stoks))
    end
    if unl ~= '1' then kr = n(redis.call('HGET', h, 'r:'..k)) - n(redis.call('HGET', h, 'h:'..k)) end
  end
  redis.call('HINCRBY', h, 'ch', units)
  local sq = d(redis.call('HINCRBY', h, 'sq', 1))
  local b = redis.call('HMGET', h, 'cr', 'ch', 'held')
  local ab = n(b[1]) - n(b[2]) - n(b[3])
  local win = n(swin)
  -- archived '1': a ledger archive is configured; its archiver trims what it archived (MINID 0 trims nothing).
  -- Else the cutoff is on Redis's clock (TIME; the stream ids' clock), never the caller's: a
  -- sidecar whose clock runs ahead would trim entries still inside the window for everyone.
  local minid = 0
  if archived ~= '1' then
    local t = redis.call('TIME')
    minid = math.max(0, tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) - win)
  end
  local lid = redis.call('XADD', led, 'MINID', '~', d(minid), '*', 'j', json, 'kr', d(kr), 'ab', d(ab), 'rs', settled)
  redis.call('SET', idem, lid, 'PX', win)
  local kcs = deleted and '' or (k..' '..kc(h, k)..' '..sq)
  local acs = ac(h)..' '..sq
  if rq then redis.call('SET', rq, account, 'PX', win) end
  -- The group budget's charge this Consume owes (its own slot, the caller's next call), in the
  -- account's outbox in this same script: a crash before that call leaves it for the recovery pass.
  if gob then redis.call('ZADD', gob, snow, owed) end
  if feed then
    redis.call('XADD', feed, 'MAXLEN', '~', maxlen, '*', 's', sid, 'kc', kcs, 'a', account, 'ac', acs, 'rs', settled)
  end
  return {1, json, d(kr), d(ab), settled, kcs, acs}
end
`;

/**
 * Budget-slice leases (lease.ts; redisStore.ts "Leases"), run by BATCH next to reserve/consume. A
 * lease of sidecar S on key K is a hold like a reservation: rd lid → "keyId|units", rsv lid →
 * expiry, counted in h:K, o:K and held, so the reserve rule of every other sidecar subtracts it, and
 * the sweep, drop and DROPKEY treat it as one. ls (a ZSET of the account's live leases, lid → expiry)
 * counts the lessees and tells a refused reserve that a lease may still hold units. The account
 * hash's lrc is the recall mark (an expiry): while it lies ahead no lease grows, and every lease
 * reply says so (its holder returns the unused part at once).
 *
 * lease(h, rsv, rd, ls, now, ttl, lid, keyId, version, keep, open, want, min, unlimited): grant,
 * renew or return. Sweeps; a key whose version or state no longer allows Checks drops the lease
 * ({-1}). Else the new hold is base + extra: base = keep (what the holder may still use: its open
 * local reservations and its unused slice) when the lease is still on Redis, open (its open local
 * reservations only) when it expired; extra ≤ want, capped at (available − base) / (2 × lessees)
 * for the account's balance and (unless unlimited) the key's quota, 0 below min or while recalled.
 * A hold of 0 removes the lease. Returns {1, hold, recall ('1'/'0')}.
 *
 * shrink(h, rsv, rd, ls, now, lid, units): a Consume settles a lease-backed reservation: the lease
 * holds `units` less (removed at 0); the Consume item after it charges as usual. {hold, recall}.
 *
 * reserveq(h, rsv, rd, rw, ls, …reserve's arguments…, leaseTtl): reserve, and when it refuses for
 * money (balance, or quota) while a live lease on the account (or on that key) may hold units, sets
 * the recall mark for leaseTtl and appends '1' to the reply (else '0'): the caller retries.
 */
const LEASE_STEPS = `
local function lrecall(h, now) return n(redis.call('HGET', h, 'lrc')) > now and '1' or '0' end
local function lease(h, rsv, rd, ls, snow, sttl, lid, k, ver, skeep, sopen, swant, smin, unl)
  local now = n(snow)
  sweep(h, rsv, rd, now)
  redis.call('ZREMRANGEBYSCORE', ls, '-inf', now)
  local v = redis.call('HMGET', h, 'v:'..k, 'x:'..k, 'r:'..k, 'h:'..k, 'o:'..k, 'cr', 'ch', 'held', 'lrc')
  local old = redis.call('HGET', rd, lid)
  local x = n(v[2])
  if v[1] ~= ver or x == -1 or (x > 0 and x <= now) then
    if old then drop(h, rsv, rd, lid) end
    redis.call('ZREM', ls, lid)
    return {-1, '0', '0'}
  end
  local ou = 0
  if old then ou = n(string.match(old, '|(%-?%d+)$')) end
  local rem, kh, open, cr, ch, held = n(v[3]), n(v[4]) - ou, n(v[5]), n(v[6]), n(v[7]), n(v[8]) - ou
  local base = old and n(skeep) or n(sopen)
  if base < 0 then base = 0 end
  local recall = n(v[9]) > now
  local extra = 0
  if not recall and n(swant) > 0 then
    local live = redis.call('ZCOUNT', ls, '('..snow, '+inf')
    if not redis.call('ZSCORE', ls, lid) then live = live + 1 end
    local cap = cr - ch - held - base
    if unl ~= '1' and rem - kh - base < cap then cap = rem - kh - base end
    cap = math.floor(cap / (2 * live))
    extra = math.min(n(swant), cap)
    if extra < n(smin) then extra = 0 end
  end
  local hold = base + extra
  if hold <= 0 then
    if old then drop(h, rsv, rd, lid) end
    redis.call('ZREM', ls, lid)
    return {1, '0', recall and '1' or '0'}
  end
  if not old then open = open + 1 end
  redis.call('HSET', h, 'h:'..k, d(kh + hold), 'o:'..k, d(open), 'held', d(held + hold))
  local e = now + n(sttl)
  redis.call('HSET', rd, lid, k..'|'..d(hold))
  redis.call('ZADD', rsv, e, lid)
  redis.call('ZADD', ls, e, lid)
  return {1, d(hold), recall and '1' or '0'}
end
local function shrink(h, rsv, rd, ls, snow, lid, sunits)
  local now = n(snow)
  local rc = lrecall(h, now)
  local old = redis.call('HGET', rd, lid)
  if not old then return {'0', rc} end
  local k, u = string.match(old, '^(.*)|(%-?%d+)$')
  u = n(u)
  local by = n(sunits)
  if by >= u then
    drop(h, rsv, rd, lid)
    redis.call('ZREM', ls, lid)
    return {'0', rc}
  end
  local c = redis.call('HMGET', h, 'h:'..k, 'held')
  redis.call('HSET', h, 'h:'..k, d(n(c[1]) - by), 'held', d(n(c[2]) - by))
  redis.call('HSET', rd, lid, k..'|'..d(u - by))
  return {d(u - by), rc}
end
local function reserveq(h, rsv, rd, rw, ls, snow, ttl, rid, k, ver, sunits, unl, sconc, srpm, stpm, sleasettl)
  local r = reserve(h, rsv, rd, rw, snow, ttl, rid, k, ver, sunits, unl, sconc, srpm, stpm)
  local rc = '0'
  if r[1] == 0 then
    local units = n(sunits)
    local balance = n(r[7]) - n(r[8]) - n(r[9]) < units
    local quota = unl ~= '1' and n(r[2]) - n(r[5]) < units
    if balance or quota then
      local live = redis.call('ZRANGEBYSCORE', ls, '('..snow, '+inf')
      local suffix = ':'..k
      for _, lid in ipairs(live) do
        if balance or string.sub(lid, -#suffix) == suffix then rc = '1' break end
      end
    end
    if rc == '1' then
      local upto = n(snow) + n(sleasettl)
      if n(redis.call('HGET', h, 'lrc')) < upto then redis.call('HSET', h, 'lrc', d(upto)) end
    end
  end
  r[#r + 1] = rc
  return r
end
`;

/** ARGV values per BATCH item, by kind (the kind letter included; key indexes first). */
export const BATCH_ITEM_ARGS = { R: 1 + 4 + 10, C: 1 + 9 + 15, L: 1 + 3 + 1, O: 1 + 1 + 1, Q: 1 + 5 + 11, G: 1 + 4 + 10, S: 1 + 4 + 3 } as const;

/**
 * The Checks (R), Consumes (C) and releases (L) of one event-loop turn, in order, in one call:
 * each item exactly as its single-item script would run it, after the items before it (a
 * refusal of one never touches another; the same request id twice: the second is a replay).
 * KEYS: every key the items name, once. ARGV: the items one after another, each its kind letter,
 * its key indexes (into KEYS; 0 = none) and its arguments:
 *   R  h rsv rd rw | now ttl rid keyId version units unlimited concurrency rpm tpm
 *   C  h rsv rd rw idem led rq feed gob | now keyId rid units tokens unlimited deleted windowMs json sid maxlen account refillTotal archived owed
 *   L  h rsv rd | rid          (a release: 1 when it was open, else 0)
 *   O  gob | owed              (the group charge `owed` was applied: out of the account's outbox)
 *   Q  h rsv rd rw ls | R's arguments leaseTtl        (reserveq: a reserve that reports a recall)
 *   G  h rsv rd ls | now ttl lid keyId version keep open want min unlimited   (lease: grant/renew/return)
 *   S  h rsv rd ls | now lid units                    (shrink: a lease-backed reservation settles)
 * Returns one reply per item, in order.
 */
export const BATCH = `${COMMON}${STEPS}${LEASE_STEPS}
local out = {}
local A = ARGV
local function key(i) local x = tonumber(A[i]); if x == 0 then return false end return KEYS[x] end
local i = 1
while i <= #A do
  local t = A[i]
  if t == 'R' then
    out[#out + 1] = reserve(key(i + 1), key(i + 2), key(i + 3), key(i + 4), A[i + 5], A[i + 6], A[i + 7], A[i + 8], A[i + 9], A[i + 10], A[i + 11], A[i + 12], A[i + 13], A[i + 14])
    i = i + 15
  elseif t == 'C' then
    out[#out + 1] = consume(key(i + 1), key(i + 2), key(i + 3), key(i + 4), key(i + 5), key(i + 6), key(i + 7), key(i + 8), key(i + 9), A[i + 10], A[i + 11], A[i + 12], A[i + 13], A[i + 14], A[i + 15], A[i + 16], A[i + 17], A[i + 18], A[i + 19], A[i + 20], A[i + 21], A[i + 22], A[i + 23], A[i + 24])
    i = i + 25
  elseif t == 'O' then
    out[#out + 1] = redis.call('ZREM', key(i + 1), A[i + 2])
    i = i + 3
  elseif t == 'L' then
    out[#out + 1] = drop(key(i + 1), key(i + 2), key(i + 3), A[i + 4]) and 1 or 0
    i = i + 5
  elseif t == 'Q' then
    out[#out + 1] = reserveq(key(i + 1), key(i + 2), key(i + 3), key(i + 4), key(i + 5), A[i + 6], A[i + 7], A[i + 8], A[i + 9], A[i + 10], A[i + 11], A[i + 12], A[i + 13], A[i + 14], A[i + 15], A[i + 16])
    i = i + 17
  elseif t == 'G' then
    out[#out + 1] = lease(key(i + 1), key(i + 2), key(i + 3), key(i + 4), A[i + 5], A[i + 6], A[i + 7], A[i + 8], A[i + 9], A[i + 10], A[i + 11], A[i + 12], A[i + 13], A[i + 14])
    i = i + 15
  elseif t == 'S' then
    out[#out + 1] = shrink(key(i + 1), key(i + 2), key(i + 3), key(i + 4), A[i + 5], A[i + 6], A[i + 7])
    i = i + 8
  else
    return redis.error_reply('BATCH: unknown item kind '..tostring(t))
  end
end
return out
`;

/**
 * Release one reservation (KEYS h, rsv, rd; ARGV rid), or — with ARGV[1] = '' and ARGV[2] = now —
 * sweep the expired ones. Returns 1/0, or how many were swept.
 */
export const RELEASE = `${COMMON}
if ARGV[1] == '' then return sweep(KEYS[1], KEYS[2], KEYS[3], n(ARGV[2])) end
return drop(KEYS[1], KEYS[2], KEYS[3], ARGV[1]) and 1 or 0
`;

/** A request id's ledger record: KEYS idem, ledger. {json, keyRemaining, accountBalance, settled} or {}. */
export const FIND = `
local id = redis.call('GET', KEYS[1])
if not id then return {} end
local e = redis.call('XRANGE', KEYS[2], id, id)
if not e[1] then return {} end
local f = e[1][2]
return {f[2], f[4], f[6], f[8]}
`;

/**
 * A group budget (its own hash tag: in cluster mode, a two-phase hold before the account's
 * reserve). KEYS: gb (hash: spent, since, held, rs), ghold (zset rid → expiry), gd (hash rid → units),
 * ap (zset requestId → expiry: the charges applied), [feed]. ARGV: mode, now, rid, units,
 * budgetUnits, ttl, sid, maxlen, name, requestId, at, markMs.
 *  - 'hold': sweep, then hold `units` if budgetUnits − spent − held covers it. {ok, spent, held, since}
 *  - 'release': drops the hold rid. {1, spent, held, since}
 *  - 'charge': drops the hold rid (if open); then, once per requestId (the ap mark, kept markMs):
 *    adds `units` to spent and publishes ({1, …}) — unless the budget is gone, or the request's
 *    time `at` lies before rs (the instant spent last started from nothing: a period reset, or the
 *    budget's creation), i.e. its period is over: nothing added, {3, …} (groupCharge.ts has the
 *    rule). A requestId already applied adds nothing: {2, …}. (On the server because another
 *    sidecar's reset may move rs between a read and the add.)
 *  - 'reset': spent := 0 (and rs := since := period start ARGV[4]) if the stored since is earlier (idempotent). Publishes.
 *  - 'start': (re)starts the budget's tracking at ARGV[4] keeping spent (admin), publishes.
 */
export const GROUP = `${COMMON}
local gb, gh, gd, ap = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local mode, now, rid = ARGV[1], n(ARGV[2]), ARGV[3]
local function gdrop(r)
  local u = redis.call('HGET', gd, r)
  if not u then return end
  redis.call('HINCRBY', gb, 'held', -n(u))
  redis.call('HDEL', gd, r)
  redis.call('ZREM', gh, r)
end
local exp = redis.call('ZRANGEBYSCORE', gh, '-inf', now, 'LIMIT', 0, 200)
for _, r in ipairs(exp) do gdrop(r) end
local ok = 1
local pub = false
if mode == 'hold' then
  local v = redis.call('HMGET', gb, 'spent', 'held')
  local avail = n(ARGV[5]) - n(v[1]) - n(v[2])
  local u = n(ARGV[4])
  if avail > 0 and avail >= u then
    redis.call('HINCRBY', gb, 'held', u)
    redis.call('ZADD', gh, now + n(ARGV[6]), rid)
    redis.call('HSET', gd, rid, ARGV[4])
  else ok = 0 end
elseif mode == 'release' then gdrop(rid)
elseif mode == 'charge' then
  if rid ~= '' then gdrop(rid) end
  redis.call('ZREMRANGEBYSCORE', ap, '-inf', now)
  -- Gone: neither spent nor since (a removed budget's hash was deleted; a hold alone writes held).
  local b = redis.call('HMGET', gb, 'spent', 'since', 'rs')
  if (not b[1] and not b[2]) or n(ARGV[11]) < n(b[3]) then ok = 3
  elseif redis.call('ZADD', ap, 'NX', now + n(ARGV[12]), ARGV[10]) == 0 then ok = 2
  else
    redis.call('HINCRBY', gb, 'spent', n(ARGV[4]))
    pub = true
  end
elseif mode == 'reset' then
  if n(redis.call('HGET', gb, 'since')) < n(ARGV[4]) then
    redis.call('HSET', gb, 'spent', '0', 'since', ARGV[4], 'rs', ARGV[4])
    pub = true
  end
elseif mode == 'start' then
  redis.call('HSET', gb, 'since', ARGV[4])
  pub = true
end
local v = redis.call('HMGET', gb, 'spent', 'held', 'since')
local gs = (v[1] or '0')..' '..(v[3] or '0')
if pub and KEYS[5] then redis.call('XADD', KEYS[5], 'MAXLEN', '~', ARGV[8], '*', 's', ARGV[7], 'g', ARGV[9], 'gc', gs) end
return {ok, v[1] or '0', v[2] or '0', v[3] or '0', pub and 1 or 0}
`;

/**
 * Refill a key for the period starting at ARGV[2] (idempotent: only when its stored refilledAt is
 * earlier). KEYS h, [feed]; ARGV keyId, periodStart, total, sid, maxlen, account. {1, counters} or {0}.
 */
export const REFILL = `${COMMON}
local h, k = KEYS[1], ARGV[1]
if redis.call('HEXISTS', h, 'k:'..k) == 0 then return {0} end
if n(redis.call('HGET', h, 'f:'..k)) >= n(ARGV[2]) then return {0} end
local r = n(redis.call('HGET', h, 'r:'..k))
redis.call('HINCRBY', h, 'c:'..k, n(ARGV[3]) - r)
redis.call('HSET', h, 'r:'..k, ARGV[3], 'f:'..k, ARGV[2])
local kcs = k..' '..kc(h, k)..' '..d(redis.call('HINCRBY', h, 'sq', 1))
if KEYS[2] then redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[5], '*', 's', ARGV[4], 'kc', kcs) end
return {1, kcs}
`;
