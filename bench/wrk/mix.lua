-- Replays the request mix written by bench/mix.py (one "path<TAB>key" line per request: a
-- GET; or "path<TAB>key<TAB>body": a POST of that JSON body, bench/batch.py's batch lookups)
-- and prints one machine-readable summary line from done().
--
-- Usage: wrk ... -s bench/wrk/mix.lua URL -- MIX_FILE
--
-- Each wrk thread has its own Lua state: init() loads the file in every thread and starts
-- it at a different offset so threads do not replay the same order in lockstep.

local threads = {}
local thread_count = 0

function setup(thread)
  thread:set("id", thread_count)
  thread_count = thread_count + 1
  table.insert(threads, thread)
end

function init(args)
  local file = assert(io.open(args[1], "r"), "cannot open the mix file")
  requests = {}
  for line in file:lines() do
    local path, key, body = line:match("^(%S+)\t(%S+)\t?(.*)$")
    if path and body ~= "" then
      requests[#requests + 1] = wrk.format("POST", path, {
        ["Authorization"] = "Bearer " .. key, ["Content-Type"] = "application/json"
      }, body)
    elseif path then
      requests[#requests + 1] = wrk.format("GET", path, { ["Authorization"] = "Bearer " .. key })
    end
  end
  file:close()
  assert(#requests > 0, "the mix file holds no request")
  index = (id * 7919) % #requests
  responses = 0
  non2xx = 0
end

function request()
  index = index % #requests + 1
  return requests[index]
end

-- wrk's own summary.errors.status only counts status > 399; count every non-2xx here.
function response(status, headers, body)
  responses = responses + 1
  if status < 200 or status > 299 then
    non2xx = non2xx + 1
  end
end

function done(summary, latency, requests)
  local responses, non2xx = 0, 0
  for _, thread in ipairs(threads) do
    responses = responses + thread:get("responses")
    non2xx = non2xx + thread:get("non2xx")
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,"responses":%d,"non2xx":%d,' ..
    '"connect_errors":%d,"read_errors":%d,"write_errors":%d,"status_errors":%d,"timeouts":%d,' ..
    '"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,"mean_us":%.1f}\n',
    summary.requests, summary.duration, summary.bytes, responses, non2xx,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, latency.mean))
end
