-- POST one console form with a session cookie: wrk ... -- COOKIE PATH BODY
dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")
function init(args)
  headers = { ["Cookie"] = args[1], ["Content-Type"] = "application/x-www-form-urlencoded" }
  path, body = args[2], args[3]
end
function request() return wrk.format("POST", path, headers, body) end
function done(summary, latency, requests) report(summary, latency) end
