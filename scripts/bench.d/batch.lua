-- Batches of N decisions per request: wrk ... -- TOKEN PREFIX SUBJECTS N
dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")
local threads = {}
function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end
function init(args)
  token, prefix, subjects, n = args[1], args[2], tonumber(args[3]), tonumber(args[4])
  counter = 0
  headers = { ["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. token }
end
function request()
  local parts = {}
  for i = 1, n do
    counter = counter + 1
    parts[i] = '{"decision_id":"' .. prefix .. "-" .. tid .. "-" .. counter ..
      '","model_version":"1","occurred_at":"2026-11-25T10:00:00Z","subject_ref":"s-' .. (counter % subjects) ..
      '","input_sha256":"' .. string.rep("c", 64) ..
      '","output":{"approved":true},"confidence":0.87,"reasons":["income_ok","history_ok"]}'
  end
  return wrk.format("POST", "/v1/systems/bench/decisions/batch", headers, '{"decisions":[' .. table.concat(parts, ",") .. "]}")
end
function done(summary, latency, requests) report(summary, latency) end
