-- Appended to every case script by benchmarks/load.py: numbers each wrk thread (the global
-- `id`, from 1, for scripts that split their inputs) and ends the run with one line
-- "BENCH {...}" that load.py parses. Latencies in microseconds. `bad` is the sum of the
-- threads' own `bad` counters: answers a script judged wrong (non-2xx, or not what it expects).
local threads = {}

function setup(thread)
  threads[#threads + 1] = thread
  thread:set("id", #threads)
end

function done(summary, latency, requests)
  local bad = 0
  for _, thread in ipairs(threads) do
    bad = bad + (tonumber(thread:get("bad")) or 0)
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH {"requests": %d, "duration_us": %d, "bytes": %d, "p50_us": %d, "p90_us": %d, '
      .. '"p99_us": %d, "max_us": %d, "connect": %d, "read": %d, "write": %d, '
      .. '"timeout": %d, "status": %d, "bad": %d}\n',
    summary.requests, summary.duration, summary.bytes,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    e.connect, e.read, e.write, e.timeout, e.status, bad
  ))
end
