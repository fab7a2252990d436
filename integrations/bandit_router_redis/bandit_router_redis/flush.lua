#!lua
-- bandit-router RedisStore: apply one batch of operations on one namespace, atomically.
--
-- KEYS[1] is the namespace's pending hash (it only routes the call to the right node; every
-- key below starts with the same "<prefix>:{<namespace>}" and so lives in the same slot).
-- ARGV[1] is a JSON object (see _store.py, `_Lane._build`):
--   b    key base "<prefix>:{<namespace>}"
--   t    the calling lane's token (owner of leases)
--   lm   lease length in milliseconds
--   r    rules: [[decay|false, expired reward|false, expired learn|false, expired failure,
--        max_pending], ...]; operations refer to them by position (1-based)
--   g    groups of choice operations on one context, each chosen by the client on the
--        context's state at version v (-1: unknown; -3: not chosen, hold the context for me;
--        a group without operations only asks to hold the context):
--        [context, v, now, rules, [op, ...]] with op one of
--        ["b", id, arm, started, expires, token]                               begin
--        ["r", id, old arm, new arm, reward, learn, failure, token]            reroute
--   o    other operations, applied in order after the groups:
--        ["s", id, reward, learn, failure, now, rules, token]                  settle
--        ["o", context, arm, reward, learn, failure, rules, token]             observe
--        ["x", now, rules]                                                     expire
--        ["B", context, id, arm, started, expires, now, rules, token]          begin (replay)
--        ["R", id, arm, reward, learn, failure, now, rules, token]             reroute (replay)
--        ["p", id]                                                             peek
--   rel  contexts whose lease this lane gives back
--   keep contexts whose lease this lane keeps (renewed; a commit does not end it)
--
-- Leases: a lane that finds a context held by another lane is queued in
-- "<base>:waiters:<context>"; when the holder gives the context back, the first lane queued
-- gets it, and the context's state is pushed to "<base>:wake:<its token>" (it waits there
-- with BLPOP instead of polling).
--   sb   true for a write-back batch: stop at the first busy operation
--
-- Returns one JSON string: [results, states, granted, held]. results has one array per
-- operation (group operations first, in order), whose first element is a code; states has,
-- for every context the batch read or changed, [context, version, clock, arm, record, ...];
-- granted lists the contexts this lane now holds, held those another lane holds.
--
-- An arm's record is the JSON array [n, total, total_sq, stamp, pulls, reward_sum, failures,
-- in_flight]. The maths is BanditState.apply's, operation for operation, on IEEE doubles, and
-- numbers are stored with 17 significant digits: Python and Lua results are bit-identical.
-- Every operation carries a token, so running the same batch twice applies it once.

local P = cjson.decode(ARGV[1])
local base, token, lease_ms = P.b, P.t, P.lm
local K_PEND = base .. ':pending'
local K_PQ = base .. ':pending-by-expiry'
local K_FIN = base .. ':finished'
local K_FQ = base .. ':finished-order'
local K_OBS = base .. ':observed'
local K_OQ = base .. ':observed-order'
local K_CTXS = base .. ':contexts'

local RULES = {}
for i, r in ipairs(P.r) do
  RULES[i] = {decay = r[1], er = r[2], el = r[3], ef = r[4], maxp = r[5]}
end

local function kstate(ctx) return base .. ':state:' .. ctx end
local function klease(ctx) return base .. ':lease:' .. ctx end

-- --- contexts: read once, changed in memory, written once at the end ----------------------

local C, C_list = {}, {}

local function ctx_of(name)
  local c = C[name]
  if c then return c end
  local flat = redis.call('HGETALL', kstate(name))
  c = {raw = {}, rec = {}, dirty = {}, arms = {}, clock = 0, version = 0,
       existed = #flat > 0, changed = false}
  for i = 1, #flat, 2 do
    local k, v = flat[i], flat[i + 1]
    if k == 'clock' then
      c.clock = tonumber(v)
    elseif k == 'version' then
      c.version = tonumber(v)
    elseif string.sub(k, 1, 2) == 'a:' then
      local arm = string.sub(k, 3)
      c.raw[arm] = v
      c.arms[#c.arms + 1] = arm
    end
  end
  C[name] = c
  C_list[#C_list + 1] = name
  return c
end

local function arm_rec(c, arm)
  local r = c.rec[arm]
  if r then return r end
  local raw = c.raw[arm]
  if raw then
    r = cjson.decode(raw)
  else
    r = {0, 0, 0, 0, 0, 0, 0, 0}
    c.arms[#c.arms + 1] = arm
  end
  c.rec[arm] = r
  return r
end

local function fmt_rec(r)
  return string.format('[%.17g,%.17g,%.17g,%d,%d,%.17g,%d,%d]',
    r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8])
end

-- BanditState.apply on record r; returns the new clock.
local function apply(r, clock, reward, learn, failure, decay)
  if failure then r[7] = r[7] + 1 end
  if reward ~= false then
    r[5] = r[5] + 1
    r[6] = r[6] + reward
  end
  if learn == false then return clock end
  clock = clock + 1
  if decay == false or decay == 1 then
    r[1] = r[1] + 1.0
    r[2] = r[2] + learn
    r[3] = r[3] + learn * learn
  else
    local f = decay ^ (clock - r[4])
    r[1] = r[1] * f + 1.0
    r[2] = r[2] * f + learn
    r[3] = r[3] * f + learn * learn
  end
  r[4] = clock
  return clock
end

local function bump(ctx, arm, delta)
  local c = ctx_of(ctx)
  local r = arm_rec(c, arm)
  r[8] = math.max(r[8] + delta, 0)
  c.dirty[arm] = true
  c.changed = true
end

local function learn_on(ctx, arm, release, reward, learn, failure, decay)
  local c = ctx_of(ctx)
  local r = arm_rec(c, arm)
  if release then r[8] = math.max(r[8] - 1, 0) end
  c.clock = apply(r, c.clock, reward, learn, failure, decay)
  c.dirty[arm] = true
  c.changed = true
end

-- --- the pending registry (a hash, and a sorted set by expiry) ------------------------------

local pq_count, pq_first = nil, nil  -- cached ZCARD and first {member, score}; nil: unknown

local function pq_add(did, score)
  redis.call('ZADD', K_PQ, score, did)
  if pq_count then pq_count = pq_count + 1 end
  if pq_first and tonumber(score) < pq_first[2] then pq_first = nil end
end

local function pq_rem(did)
  if redis.call('ZREM', K_PQ, did) == 1 and pq_count then pq_count = pq_count - 1 end
  if pq_first and pq_first[1] == did then pq_first = nil end
end

local trim_fin, trim_obs = nil, nil  -- the bound to trim each registry to at the end

-- Move a pending decision to the finished registry (bounded like the pending one).
local function finish(did, d, how, tok, maxp)
  redis.call('HDEL', K_PEND, did)
  pq_rem(did)
  redis.call('HSET', K_FIN, did,
    cjson.encode({h = how, t = tok, bt = d.t, c = d.c, a = d.a, s = d.s, e = d.e}))
  redis.call('RPUSH', K_FQ, did)
  trim_fin = maxp
end

local function expire(now, room, R)
  local count = 0
  while true do
    if pq_count == nil then pq_count = redis.call('ZCARD', K_PQ) end
    if pq_count == 0 then break end
    if pq_first == nil then
      local f = redis.call('ZRANGE', K_PQ, 0, 0, 'WITHSCORES')
      pq_first = {f[1], tonumber(f[2])}
    end
    if pq_first[2] > now and pq_count + room <= R.maxp then break end
    local did = pq_first[1]
    local raw = redis.call('HGET', K_PEND, did)
    if raw then
      local d = cjson.decode(raw)
      learn_on(d.c, d.a, true, R.er, R.el, R.ef, R.decay)
      finish(did, d, 'expired', '', R.maxp)
    else
      pq_rem(did)
    end
    count = count + 1
  end
  return count
end

-- --- leases -------------------------------------------------------------------------------

local L = {}  -- ctx -> milliseconds left on another lane's lease, or false

local function leased(ctx)
  local v = L[ctx]
  if v == nil then
    local holder = redis.call('GET', klease(ctx))
    if holder and holder ~= token then
      v = redis.call('PTTL', klease(ctx))
    else
      v = false
    end
    L[ctx] = v
  end
  return v
end

-- Contexts this lane gives back at the end of the call (to the first lane waiting, if any).
local RELEASE, RELEASE_list = {}, {}
local function unlease(ctx)
  if not RELEASE[ctx] then
    RELEASE[ctx] = true
    RELEASE_list[#RELEASE_list + 1] = ctx
  end
  L[ctx] = false
end

-- Another lane holds ctx: queue this lane to be handed the context when it is given back.
local function wait_for(ctx)
  local q = base .. ':waiters:' .. ctx
  if not redis.call('LPOS', q, token) then redis.call('RPUSH', q, token) end
  redis.call('PEXPIRE', q, 60000)
end

local function gone(did)
  local fin = redis.call('HGET', K_FIN, did)
  if fin then return {'gone', cjson.decode(fin).h} end
  return {'gone', ''}
end

local function has_token(list, tok)
  if type(list) ~= 'table' then return false end
  for _, x in ipairs(list) do
    if x == tok then return true end
  end
  return false
end

local results = {}

-- --- 1. groups of choice operations, valid only on the version they were chosen on ----------

local KEEP = {}  -- contexts this lane keeps holding after this call
for _, ctx in ipairs(P.keep) do KEEP[ctx] = true end
local added = {}  -- ids begun by this batch
local granted, held = {}, {}  -- contexts given to this lane / held by another lane
for _, g in ipairs(P.g) do
  local ctx, expected, now, R, ops = g[1], g[2], g[3], RULES[g[4]], g[5]
  local res, done, dup = {}, {}, {}
  local todo, room, reroutes, seen_dup = 0, 0, 0, false
  -- Replays of applied operations are answered from the registry; used ids are found.
  for i, op in ipairs(ops) do
    local did, tok = op[2], op[#op]
    local raw = redis.call('HGET', K_PEND, did)
    if raw then
      local d = cjson.decode(raw)
      if (op[1] == 'b' and d.t == tok) or (op[1] == 'r' and has_token(d.r, tok)) then
        res[i] = {'ok', d.a}
        done[i] = true
      elseif op[1] == 'b' then
        dup[i] = true
      end
    elseif op[1] == 'b' then
      local fin = redis.call('HGET', K_FIN, did)
      if fin then
        local f = cjson.decode(fin)
        if f.bt == tok then
          res[i] = {'ok', f.a}
          done[i] = true
        else
          dup[i] = true
        end
      end
    end
    if not done[i] then
      todo = todo + 1
      if op[1] == 'r' then reroutes = reroutes + 1 end
      if dup[i] then seen_dup = true end
      if op[1] == 'b' and not seen_dup then room = room + 1 end
    end
  end
  if todo > 0 or #ops == 0 then  -- (a group without operations asks for the context)
    -- As InMemoryStore: a begin with a used id expires nothing.
    if room > 0 or reroutes > 0 then expire(now, room, R) end
    local busy = leased(ctx)
    local c = (not busy) and ctx_of(ctx)
    if busy then
      held[#held + 1] = ctx
      wait_for(ctx)
      for i = 1, #ops do
        if not done[i] then res[i] = {'busy', tostring(busy)} end
      end
    elseif expected == -3 or c.changed or c.version ~= expected then
      -- Not chosen yet (-3: the caller saw the context contended), or optimistic concurrency
      -- failed: the caller chooses on the state returned and holds the context meanwhile
      -- (other lanes get 'busy'), so its next call commits.
      if expected ~= -1 then
        redis.call('SET', klease(ctx), token, 'PX', lease_ms)
        L[ctx] = false
        granted[#granted + 1] = ctx
      end
      for i = 1, #ops do
        if not done[i] then res[i] = {'retry'} end
      end
    else
      local cut = false  -- after a failed operation, the later ones were chosen on a wrong state
      for i, op in ipairs(ops) do
        local did = op[2]
        if done[i] then
          -- a replay, answered above
        elseif cut then
          res[i] = {'retry'}
        elseif op[1] == 'b' then
          if dup[i] or added[did] then
            res[i] = {'dup'}
            cut = true
          else
            bump(ctx, op[3], 1)
            redis.call('HSET', K_PEND, did,
              cjson.encode({c = ctx, a = op[3], s = op[4], e = op[5], t = op[6]}))
            pq_add(did, op[5])
            added[did] = true
            res[i] = {'ok', op[3]}
          end
        else
          local raw = redis.call('HGET', K_PEND, did)
          if not raw then
            res[i] = gone(did)
            cut = true
          else
            local d = cjson.decode(raw)
            if d.c ~= ctx or d.a ~= op[3] then
              res[i] = {'stale', d.c, d.a}
              cut = true
            else
              learn_on(ctx, op[3], true, op[5], op[6], op[7], R.decay)
              bump(ctx, op[4], 1)
              d.a = op[4]
              if type(d.r) ~= 'table' then d.r = {} end
              d.r[#d.r + 1] = op[8]
              redis.call('HSET', K_PEND, did, cjson.encode(d))
              res[i] = {'ok', op[4]}
            end
          end
        end
      end
      -- More begins in this group than the registry holds: the expiry above could only make
      -- room for max_pending of them; expire the oldest now, as the other stores do.
      if room > R.maxp then expire(now, 0, R) end
      if not KEEP[ctx] then unlease(ctx) end
    end
  end
  for i = 1, #ops do results[#results + 1] = res[i] end
end

-- --- 2. the other operations, in order ------------------------------------------------------

local function settle(op)
  local did, R, tok = op[2], RULES[op[7]], op[8]
  expire(op[6], 0, R)
  local raw = redis.call('HGET', K_PEND, did)
  if not raw then
    local fin = redis.call('HGET', K_FIN, did)
    if fin then
      local f = cjson.decode(fin)
      if f.h == 'settled' and f.t == tok then return {'ok', f.c, f.a, f.s, f.e} end
      return {'gone', f.h}
    end
    return {'gone', ''}
  end
  local d = cjson.decode(raw)
  local busy = leased(d.c)
  if busy then return {'busy', tostring(busy), d.c} end
  learn_on(d.c, d.a, true, op[3], op[4], op[5], R.decay)
  finish(did, d, 'settled', tok, R.maxp)
  return {'ok', d.c, d.a, d.s, d.e}
end

local function observe(op)
  local ctx, R, tok = op[2], RULES[op[7]], op[8]
  if redis.call('HEXISTS', K_OBS, tok) == 1 then return {'ok'} end
  local busy = leased(ctx)
  if busy then return {'busy', tostring(busy), ctx} end
  learn_on(ctx, op[3], false, op[4], op[5], op[6], R.decay)
  redis.call('HSET', K_OBS, tok, '1')
  redis.call('RPUSH', K_OQ, tok)
  trim_obs = R.maxp
  return {'ok'}
end

local function begin_replay(op)
  local ctx, did, arm, R, tok = op[2], op[3], op[4], RULES[op[8]], op[9]
  local raw = redis.call('HGET', K_PEND, did)
  if raw then
    if cjson.decode(raw).t == tok then return {'ok', arm} end
    return {'dup'}
  end
  local fin = redis.call('HGET', K_FIN, did)
  if fin then
    if cjson.decode(fin).bt == tok then return {'ok', arm} end
    return {'dup'}
  end
  local busy = leased(ctx)
  if busy then return {'busy', tostring(busy)} end
  expire(op[7], 1, R)
  bump(ctx, arm, 1)
  redis.call('HSET', K_PEND, did, cjson.encode({c = ctx, a = arm, s = op[5], e = op[6], t = tok}))
  pq_add(did, op[6])
  return {'ok', arm}
end

local function reroute_replay(op)
  local did, arm, R, tok = op[2], op[3], RULES[op[8]], op[9]
  expire(op[7], 0, R)
  local raw = redis.call('HGET', K_PEND, did)
  if not raw then return gone(did) end
  local d = cjson.decode(raw)
  if has_token(d.r, tok) then return {'ok', d.a} end
  local busy = leased(d.c)
  if busy then return {'busy', tostring(busy)} end
  learn_on(d.c, d.a, true, op[4], op[5], op[6], R.decay)
  bump(d.c, arm, 1)
  d.a = arm
  if type(d.r) ~= 'table' then d.r = {} end
  d.r[#d.r + 1] = tok
  redis.call('HSET', K_PEND, did, cjson.encode(d))
  return {'ok', arm}
end

local function peek(op)
  local raw = redis.call('HGET', K_PEND, op[2])
  if not raw then return gone(op[2]) end
  local d = cjson.decode(raw)
  return {'ok', d.c, d.a, d.s, d.e}
end

local HANDLERS = {s = settle, o = observe, B = begin_replay, R = reroute_replay, p = peek}

local stopped = false
for _, op in ipairs(P.o) do
  local r
  if stopped then
    r = {'busy', '0'}
  elseif op[1] == 'x' then
    r = {'ok', tostring(expire(op[2], 0, RULES[op[3]]))}
  else
    r = HANDLERS[op[1]](op)
  end
  if P.sb and r[1] == 'busy' then stopped = true end
  results[#results + 1] = r
end

for _, ctx in ipairs(P.rel) do unlease(ctx) end

-- --- 3. write the changed contexts and trim the registries ----------------------------------

-- The registries of finished ids and applied observations are bounded FIFOs (a hash plus a
-- list of its keys in arrival order).
local function trim(khash, klist, bound)
  local over = redis.call('LLEN', klist) - bound
  while over > 0 do
    local old = redis.call('LPOP', klist, math.min(over, 1000))
    redis.call('HDEL', khash, unpack(old))
    over = over - #old
  end
end
if trim_fin then trim(K_FIN, K_FQ, trim_fin) end
if trim_obs then trim(K_OBS, K_OQ, trim_obs) end

for _, name in ipairs(C_list) do
  local c = C[name]
  if c.changed then
    c.version = c.version + 1
    local args = {kstate(name)}
    for arm in pairs(c.dirty) do
      local s = fmt_rec(c.rec[arm])
      c.raw[arm] = s
      args[#args + 1] = 'a:' .. arm
      args[#args + 1] = s
    end
    args[#args + 1] = 'clock'
    args[#args + 1] = string.format('%d', c.clock)
    args[#args + 1] = 'version'
    args[#args + 1] = string.format('%d', c.version)
    redis.call('HSET', unpack(args))
    if not c.existed then redis.call('SADD', K_CTXS, name) end
  end
end

local function state_of(name)
  local c = ctx_of(name)
  local st = {name, string.format('%d', c.version), string.format('%d', c.clock)}
  for _, arm in ipairs(c.arms) do
    local s = c.raw[arm]
    if s == nil and c.rec[arm] then s = fmt_rec(c.rec[arm]) end
    if s then
      st[#st + 1] = arm
      st[#st + 1] = s
    end
  end
  return st
end

-- Leases: renew those kept; hand those given back to the first lane waiting (with the
-- context's state, so it can choose and commit in one more call), else free them.
for _, ctx in ipairs(P.keep) do
  if not RELEASE[ctx] then
    local holder = redis.call('GET', klease(ctx))
    if not holder or holder == token then
      redis.call('SET', klease(ctx), token, 'PX', lease_ms)
    end
  end
end
for _, ctx in ipairs(RELEASE_list) do
  if redis.call('GET', klease(ctx)) == token then
    local q = base .. ':waiters:' .. ctx
    local nxt = redis.call('LPOP', q)
    while nxt == token do nxt = redis.call('LPOP', q) end
    if nxt then
      redis.call('SET', klease(ctx), nxt, 'PX', lease_ms)
      local wake = base .. ':wake:' .. nxt
      redis.call('RPUSH', wake, cjson.encode(state_of(ctx)))
      redis.call('PEXPIRE', wake, lease_ms)
    else
      redis.call('DEL', klease(ctx))
    end
  end
end

local states = {}
for _, name in ipairs(C_list) do states[#states + 1] = state_of(name) end
return cjson.encode({results, states, granted, held})
