-- wrk script for the Licensor benchmark: a different request every time, a JSON summary at the end.
--
--   wrk -t1 -c64 -d10s -H 'Date: ...' -H 'Authorization: ...' -s bench/load.lua URL -- MODE FILE TAG
--
-- MODE  get:        each line of FILE is a path (with its query string), taken in turn
--       activate:   each line is a license key; POST a fresh hardware_id "act-TAG-N" every request
--       bundle:     each line is a key of a license of the bundle "bench-suite"; POST
--                   /api/v4/activate_bundle with a fresh hardware_id "bundle-TAG-N"
--       deactivate: each line is "license_key hardware_id"; each pair is used once (then errors)
--       offline:    each line is an offline activation request file (base64), POSTed once each
--                   to /api/v4/activate_offline (then the last again: offline_request_replayed)
--       consume:    each line is "license_key hardware_id" of an activated device of a
--                   consumption license (unlimited): one unit reported, the lines taken in turn
-- The signed Date/Authorization headers come from the command line (-H) and stay valid for the
-- run (the server accepts 15 minutes of skew). Prints one BENCH-JSON line and one BENCH-QUANTILES
-- line at the end.

local mode, tag
local items = {}
local count = 0
local next_item = 0
local sent = 0

local function split(line)
  local a, b = line:match("^(%S+)%s+(%S+)$")
  return a, b
end

function init(args)
  mode = args[1]
  tag = args[3] or "t"
  for line in io.lines(args[2]) do
    if #line > 0 then
      count = count + 1
      items[count] = line
    end
  end
  if count == 0 then
    error("no lines in " .. args[2])
  end
end

local function take()
  next_item = next_item + 1
  if next_item > count then
    if mode == "deactivate" or mode == "offline" then
      -- pool exhausted: the last pair again, which fails with device_not_found (counted as an
      -- error; not a wrong key, which the rate limits would count against this client and then
      -- refuse every request of the following runs)
      return items[count]
    end
    next_item = 1
  end
  return items[next_item]
end

function request()
  sent = sent + 1
  if mode == "get" then
    return wrk.format("GET", take())
  elseif mode == "activate" then
    local body = '{"product":"bench","license_key":"' .. take() ..
      '","hardware_id":"act-' .. tag .. '-' .. sent ..
      '","is_vm":false,"os_ver":"Linux","hostname":"bench","app_ver":"1.0","sdk_ver":"bench"}'
    return wrk.format("POST", "/api/v4/activate_license", nil, body)
  elseif mode == "bundle" then
    local body = '{"product":"bench-suite","license_key":"' .. take() ..
      '","hardware_id":"bundle-' .. tag .. '-' .. sent ..
      '","is_vm":false,"os_ver":"Linux","hostname":"bench","app_ver":"1.0","sdk_ver":"bench"}'
    return wrk.format("POST", "/api/v4/activate_bundle", nil, body)
  elseif mode == "offline" then
    return wrk.format("POST", "/api/v4/activate_offline", nil, take())
  elseif mode == "consume" then
    local key, hw = split(take())
    local body = '{"product":"bench","license_key":"' .. key .. '","hardware_id":"' .. hw ..
      '","consumptions":1}'
    return wrk.format("POST", "/api/v4/add_consumption", nil, body)
  else
    local key, hw = split(take())
    local body = '{"product":"bench","license_key":"' .. key .. '","hardware_id":"' .. hw .. '"}'
    return wrk.format("POST", "/api/v4/deactivate_license", nil, body)
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH-JSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latency_us":{"p50":%d,"p90":%d,"p99":%d,"p999":%d,"max":%d,"mean":%.1f}}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.max, latency.mean))
  -- the latency distribution at 1,000 evenly spaced quantiles (0.05% .. 99.95%), so that the
  -- slices of one measurement (bench/run.py --slices) merge into one distribution
  local q = {}
  for i = 1, 1000 do
    q[i] = string.format("%d", latency:percentile((i - 0.5) / 10))
  end
  io.write('BENCH-QUANTILES [' .. table.concat(q, ",") .. ']\n')
end
