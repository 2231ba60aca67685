-- GET one console page with a session cookie: wrk ... -- COOKIE PATH
dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")
function init(args)
  headers = { ["Cookie"] = args[1] }
  path = args[2]
end
function request() return wrk.format("GET", path, headers) end
function done(summary, latency, requests) report(summary, latency) end
