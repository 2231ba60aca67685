-- GET requests with a random number substituted for {n} in the path: wrk ... -- TOKEN PATH MAX
dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")
function init(args)
  token, path, max = args[1], args[2], tonumber(args[3])
  headers = { ["Authorization"] = "Bearer " .. token }
  math.randomseed(os.time() + math.floor(os.clock() * 1e6))
end
function request()
  local p = string.gsub(path, "{n}", tostring(math.random(0, max - 1)))
  return wrk.format("GET", p, headers)
end
function done(summary, latency, requests) report(summary, latency) end
