-- aisa-authz forward-auth for HAProxy (>= 2.5): `http-request lua.aisa-authz`.
--
-- Asks the sidecar's /auth (AISA_AUTHZ_URL) with the request's headers, its body when buffered
-- (option http-buffer-request), X-Original-URI, X-Original-Method and X-Forwarded-For with the
-- client HAProxy saw appended (the sidecar reads the rightmost entry; a client's own entries
-- further left never count). A 200 lets the request on with the sidecar's x-aisa-* headers
-- (a client's own values removed first) and without the client's credential headers. Any other
-- answer is sent to the client as the sidecar gave it: status, JSON body, www-authenticate,
-- retry-after, x-aisa-reason, x-ratelimit-*. On allow the x-ratelimit-* figures go to txn
-- variables (txn.aisa_rl_limit_requests…) that haproxy.cfg sets on the client's response. The sidecar unreachable (or anything that is not its answer)
-- → 503 with a JSON body: HAProxy fails closed.

local AUTH_URL = os.getenv("AISA_AUTHZ_URL") or "http://127.0.0.1:9195/auth"
local TIMEOUT_MS = tonumber(os.getenv("AISA_AUTHZ_TIMEOUT_MS") or "5000")

local SKIP = { ["host"] = true, ["content-length"] = true, ["connection"] = true, ["transfer-encoding"] = true,
  ["keep-alive"] = true, ["upgrade"] = true, ["te"] = true, ["x-forwarded-for"] = true,
  ["x-original-uri"] = true, ["x-original-method"] = true, ["x-forwarded-uri"] = true, ["x-forwarded-method"] = true,
  ["x-envoy-auth-partial-body"] = true }
local OUT = { "x-aisa-key-id", "x-aisa-account-id", "x-aisa-group", "x-aisa-reservation" }
local CREDENTIALS = { "authorization", "x-api-key", "api-key", "x-goog-api-key" }
local RATE = { "x-ratelimit-limit-requests", "x-ratelimit-remaining-requests", "x-ratelimit-reset-requests",
  "x-ratelimit-limit-tokens", "x-ratelimit-remaining-tokens", "x-ratelimit-reset-tokens" }
local PASS_BACK = { "content-type", "www-authenticate", "retry-after", "x-aisa-reason", "cache-control", table.unpack(RATE) }
local UNAVAILABLE = '{"error":{"message":"Authorization is temporarily unavailable. Retry later.","type":"api_error","code":"service_unavailable","param":null}}'

-- HAProxy header tables are indexed from 0.
local function values(t)
  local out = {}
  if t == nil then return out end
  local i = 0
  while t[i] ~= nil do
    out[#out + 1] = t[i]
    i = i + 1
  end
  if #out == 0 then for _, v in ipairs(t) do out[#out + 1] = v end end
  return out
end

local function first(t)
  local v = values(t)
  return v[1]
end

core.register_action("aisa-authz", { "http-req" }, function(txn)
  local headers = {}
  for name, vals in pairs(txn.http:req_get_headers()) do
    local n = string.lower(name)
    if not SKIP[n] then headers[n] = values(vals) end
  end
  headers["x-original-uri"] = { txn.sf:pathq() }
  headers["x-original-method"] = { txn.sf:method() }
  local xff = values(txn.http:req_get_headers()["x-forwarded-for"])
  xff[#xff + 1] = txn.sf:src()
  headers["x-forwarded-for"] = { table.concat(xff, ", ") }

  -- The buffered body stops at tune.bufsize: say so when it was cut (Envoy's header for it),
  -- so the sidecar reads the model from the prefix instead of failing on truncated JSON.
  local body = txn.sf:req_body() or ""
  local declared = tonumber(first(txn.http:req_get_headers()["content-length"]) or "")
  if declared ~= nil and #body < declared then headers["x-envoy-auth-partial-body"] = { "true" } end
  local hc = core.httpclient()
  local ok, res = pcall(function()
    return hc:post({ url = AUTH_URL, headers = headers, body = body or "", timeout = TIMEOUT_MS })
  end)

  -- Only the sidecar's own answers count: an allow names the key, a deny its reason. Anything
  -- else (no answer, HAProxy's own 503 when the sidecar cannot be reached) fails closed.
  local allowed = ok and res ~= nil and res.status ~= nil and res.status >= 200 and res.status < 300 and first(res.headers["x-aisa-key-id"]) ~= nil
  local denied = ok and res ~= nil and res.status ~= nil and res.status >= 400 and first(res.headers["x-aisa-reason"]) ~= nil
  if not allowed and not denied then
    local reply = txn:reply({ status = 503, reason = "Service Unavailable", body = UNAVAILABLE,
      headers = { ["content-type"] = { "application/json" }, ["retry-after"] = { "1" } } })
    txn:done(reply)
    return
  end

  if allowed then
    for _, n in ipairs(OUT) do txn.http:req_del_header(n) end
    for _, n in ipairs(CREDENTIALS) do txn.http:req_del_header(n) end
    for _, n in ipairs(OUT) do
      local v = first(res.headers[n])
      if v ~= nil and v ~= "" then txn.http:req_set_header(n, v) end
    end
    -- The key's x-ratelimit-* figures, for haproxy.cfg's http-response rules (txn.aisa_rl_*).
    for _, n in ipairs(RATE) do
      local v = first(res.headers[n])
      if v ~= nil and v ~= "" then txn:set_var("txn.aisa_rl_" .. string.gsub(string.sub(n, 13), "-", "_"), v) end
    end
    return
  end

  local out = {}
  for _, n in ipairs(PASS_BACK) do
    local v = first(res.headers[n])
    if v ~= nil then out[n] = { v } end
  end
  local reply = txn:reply({ status = res.status, body = res.body or "", headers = out })
  txn:done(reply)
end, 0)
