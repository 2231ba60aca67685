-- GET a random full tile as tlog-tiles encodes its path: wrk ... -- TOKEN KIND TILES
-- KIND is a level ("0", "1") or "entries"; TILES the number of full tiles there.
dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")
function init(args)
  token, kind, tiles = args[1], args[2], tonumber(args[3])
  headers = { ["Authorization"] = "Bearer " .. token }
  math.randomseed(os.time() + math.floor(os.clock() * 1e6))
end
-- 1234067 -> x001/x234/067
function encode(n)
  local s = string.format("%03d", n % 1000)
  n = math.floor(n / 1000)
  while n > 0 do
    s = string.format("x%03d/", n % 1000) .. s
    n = math.floor(n / 1000)
  end
  return s
end
function request()
  return wrk.format("GET", "/tile/" .. kind .. "/" .. encode(math.random(0, tiles - 1)), headers)
end
function done(summary, latency, requests) report(summary, latency) end
