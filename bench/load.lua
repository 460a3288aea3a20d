-- wrk script shared by every row of the benchmark (issue #4), so every row pays the same client
-- cost: one request() call per request. Arguments: PATH, a file of X-Auth-Token values (one per
-- line, sent in order, round robin; "" sends no token), and "1" to count answers by status.
-- done() prints one JSON line that bench/run.py reads.
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

local tokens = {}
local n, i = 0, 0
local path = "/"
counts = {}

function init(args)
  path = args[1] or "/"
  local file_name = args[2] or ""
  if file_name ~= "" then
    for line in io.lines(file_name) do
      n = n + 1
      tokens[n] = line
    end
  end
  if args[3] == "1" then
    response = function(status, headers, body)
      counts[status] = (counts[status] or 0) + 1
    end
  end
end

function request()
  if n == 0 then
    return wrk.format("GET", path)
  end
  i = i + 1
  if i > n then i = 1 end
  return wrk.format("GET", path, { ["X-Auth-Token"] = tokens[i] })
end

function done(summary, latency, requests)
  local sums, merged = {}, {}
  for _, thread in ipairs(threads) do
    for status, count in pairs(thread:get("counts") or {}) do
      sums[status] = (sums[status] or 0) + count
    end
  end
  for status, count in pairs(sums) do
    merged[#merged + 1] = string.format('"%d": %d', status, count)
  end
  io.write(string.format(
    '{"requests": %d, "seconds": %f, "errors": {"connect": %d, "read": %d, "write": %d, ' ..
    '"status": %d, "timeout": %d}, "p50_us": %d, "p99_us": %d, "statuses": {%s}}\n',
    summary.requests, summary.duration / 1e6, summary.errors.connect, summary.errors.read,
    summary.errors.write, summary.errors.status, summary.errors.timeout,
    latency:percentile(50), latency:percentile(99), table.concat(merged, ", ")))
end
