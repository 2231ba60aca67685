-- One decision per request, unique ids per thread and run: wrk ... -- TOKEN PREFIX SUBJECTS
dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")
local threads = {}
function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end
function init(args)
  token, prefix, subjects = args[1], args[2], tonumber(args[3])
  counter = 0
  headers = { ["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. token }
end
function request()
  counter = counter + 1
  local body = '{"decision_id":"' .. prefix .. "-" .. tid .. "-" .. counter ..
    '","model_version":"1","occurred_at":"2026-11-25T10:00:00Z","subject_ref":"s-' .. (counter % subjects) ..
    '","input_sha256":"' .. string.rep("c", 64) ..
    '","output":{"approved":true},"confidence":0.87,"reasons":["income_ok","history_ok"],' ..
    '"human_review":{"reviewer":"analyst-7","action":"accepted","review_ms":4200}}'
  return wrk.format("POST", "/v1/systems/bench/decisions", headers, body)
end
function done(summary, latency, requests) report(summary, latency) end
