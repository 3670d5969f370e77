-- POST /oauth/token, grant_type=refresh_token, HTTP Basic from $ISSUER_BENCH_AUTH.
-- Refresh tokens rotate: each is sent once, and the one in the answer goes back in the queue.
-- $ISSUER_BENCH_TOKENS holds one starting token per line, more than there are connections;
-- run with one wrk thread (-t1), else two threads would replay the same tokens.
-- A failed refresh ends its chain; once none is left, "exhausted" is sent and counts as non-2xx.
-- Driven by benchmarks/issuer_bench.py.
local auth = os.getenv("ISSUER_BENCH_AUTH")
local queue = {}

function init(args)
  for line in io.lines(os.getenv("ISSUER_BENCH_TOKENS")) do
    queue[#queue + 1] = line
  end
end

function request()
  local token = table.remove(queue, 1) or "exhausted"
  return wrk.format("POST", nil, {
    ["Content-Type"] = "application/x-www-form-urlencoded",
    ["Authorization"] = auth,
  }, "grant_type=refresh_token&refresh_token=" .. token)
end

function response(status, headers, body)
  local token = body:match('"refresh_token"%s*:%s*"([^"]+)"')
  if token then
    queue[#queue + 1] = token
  end
end
