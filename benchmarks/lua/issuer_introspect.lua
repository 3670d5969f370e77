-- POST /oauth/introspect with a resource server's HTTP Basic from $ISSUER_BENCH_AUTH, cycling
-- through the access tokens in $ISSUER_BENCH_TOKENS (one per line).
-- Driven by benchmarks/issuer_bench.py.
local auth = os.getenv("ISSUER_BENCH_AUTH")
local tokens = {}
local next_token = 0

function init(args)
  for line in io.lines(os.getenv("ISSUER_BENCH_TOKENS")) do
    tokens[#tokens + 1] = line
  end
end

function request()
  next_token = next_token % #tokens + 1
  return wrk.format("POST", nil, {
    ["Content-Type"] = "application/x-www-form-urlencoded",
    ["Authorization"] = auth,
  }, "token=" .. tokens[next_token])
end
