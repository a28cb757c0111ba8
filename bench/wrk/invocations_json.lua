-- wrk script for bench/serve_bench.py: POST /invocations with a JSON body
-- {"url": "file:///abs/path.jpg"} (Content-Type: application/json), cycling
-- through the absolute paths named after `--` (the server must allow their
-- folder: kennel serve --allow-file-root DIR). Counts responses per HTTP status
-- and prints them last, as
--   serve_bench statuses: 200=1234 503=5
-- Usage: wrk -t2 -c8 -d10s --latency -s bench/wrk/invocations_json.lua \
--          http://127.0.0.1:8080/invocations -- /abs/a.jpg /abs/b.jpg
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

local function json_string(text)
  return '"' .. text:gsub('[%c"\\]', function(c)
    return string.format("\\u%04x", c:byte())
  end) .. '"'
end

function init(args)
  requests = {}
  for _, path in ipairs(args) do
    assert(path:sub(1, 1) == "/", "invocations_json.lua: paths must be absolute: " .. path)
    local file = assert(io.open(path, "rb"))  -- fail early on a missing file
    file:close()
    local body = '{"url": ' .. json_string("file://" .. path) .. '}'
    table.insert(requests, wrk.format("POST", nil, {["Content-Type"] = "application/json"}, body))
  end
  assert(#requests > 0, "invocations_json.lua: name the image files after --")
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
