-- wrk script for bench/serve_bench.py: POST /invocations with raw JPEG bytes
-- (Content-Type: image/jpeg), cycling through the files named after `--`.
-- Counts responses per HTTP status and prints them last, as
--   serve_bench statuses: 200=1234 503=5
-- Usage: wrk -t2 -c8 -d10s --latency -s bench/wrk/invocations_jpeg.lua \
--          http://127.0.0.1:8080/invocations -- a.jpg b.jpg
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  requests = {}
  for _, path in ipairs(args) do
    local file = assert(io.open(path, "rb"))
    local body = file:read("*a")
    file:close()
    table.insert(requests, wrk.format("POST", nil, {["Content-Type"] = "image/jpeg"}, body))
  end
  assert(#requests > 0, "invocations_jpeg.lua: name the JPEG files after --")
  next_request = 0
  statuses = {}
end

function request()
  next_request = next_request % #requests + 1
  return requests[next_request]
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
  local total = {}
  for _, thread in ipairs(threads) do
    for status, count in pairs(thread:get("statuses")) do
      total[status] = (total[status] or 0) + count
    end
  end
  local keys = {}
  for status in pairs(total) do table.insert(keys, status) end
  table.sort(keys)
  local parts = {}
  for _, status in ipairs(keys) do table.insert(parts, string.format("%d=%d", status, total[status])) end
  io.write("serve_bench statuses: " .. table.concat(parts, " ") .. "\n")
end
