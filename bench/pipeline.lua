-- wrk script: HTTP/1.1 pipelining.
--
--   wrk --latency -s bench/pipeline.lua http://127.0.0.1:8000/plaintext -- 16
--
-- Every write on a connection carries `depth` requests (default 16) built
-- with wrk.format() for the URL's path, exactly as TechEmpower's plaintext
-- test does; wrk counts each response, so Requests/sec is responses/s.

init = function(args)
   local depth = tonumber(args[1]) or 16
   local r = {}
   for i = 1, depth do
      r[i] = wrk.format()
   end
   req = table.concat(r)
end

request = function()
   return req
end

-- wrk 4.1's percentiles are wrong when pipelining: its coordinated-omission
-- correction (stats_correct) assumes one response per interval per
-- connection, adds samples below the smallest recorded latency, and
-- stats_percentile only sums from that minimum, so a high percentile finds
-- too few samples and prints 0 ("99%  0.00us"). The samples it cannot see
-- are all below every visible one, so: find the visible share v (the largest
-- q with percentile(q) > 0) and read the p-th percentile as percentile(p -
-- (100 - v)). When nothing is hidden this is exactly wrk's own number.
local function fixed_percentile(latency, p)
   local lo, hi = 0, 100
   for _ = 1, 40 do
      local mid = (lo + hi) / 2
      if latency:percentile(mid) > 0 then lo = mid else hi = mid end
   end
   local q = p - (100 - lo)
   if q <= 0 then
      return latency.min
   end
   return latency:percentile(q)
end

done = function(summary, latency, requests)
   for _, p in ipairs({ 50, 90, 99 }) do
      io.write(string.format("Pipelined latency p%d (us): %d\n", p,
                             fixed_percentile(latency, p)))
   end
end
